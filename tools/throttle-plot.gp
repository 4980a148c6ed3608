# gnuplot script for `tools/bench --throttle`: client vs replication throughput and the
# throttle's queue over time, from tests/guest/throttle-check.py's CSV.
# Usage: gnuplot -e "in='throttled.csv'; out='throttle.png'; lift=30; lower=38" tools/throttle-plot.gp
set datafile separator ","
set terminal pngcairo size 1000,560 font ",10"
set output out
set title "twinlun flow control: node A's client writes at QD32, backplane limited with htb, lifted for 8 s"
set xlabel "seconds"
set ylabel "MB/s"
set y2label "writes waiting at the throttle"
set ytics nomirror
set y2tics
set key top left
set grid
set arrow from lift, graph 0 to lift, graph 1 nohead dt 2 lc rgb "gray40"
set arrow from lower, graph 0 to lower, graph 1 nohead dt 2 lc rgb "gray40"
plot in using 1:2 skip 1 with lines lw 2 lc rgb "#1f77b4" title "client (twl-workload)", \
     in using 1:3 skip 1 with lines lw 2 dt 3 lc rgb "#d62728" title "replication (acknowledged by node B)", \
     in using 1:4 skip 1 axes x1y2 with steps lc rgb "#2ca02c" title "throttle queue (writes)"
