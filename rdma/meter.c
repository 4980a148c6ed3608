/*
 * Completion-rate meter: throughput and capacity as exponentially weighted moving averages
 * over irregular intervals.
 *
 * The signal averaged is the delivery rate as a function of time: each completion's bytes
 * are spread evenly over the interval since the previous completion. Over an interval of
 * length dt carrying b bytes, the continuous-time EWMA with time constant W becomes
 *
 *     avg = avg * exp(-dt / W) + (1 - exp(-dt / W)) * b / dt
 *
 * which weights each interval by its length, not by the number of completions in it, so the
 * same rate gives the same estimate whatever the spacing. Completions at one instant belong
 * to the same interval (their bytes are added with that interval's gain). The average starts
 * from 0, so each estimator also tracks the weight it has observed, w = w * exp(-dt / W) +
 * (1 - exp(-dt / W)), and reports avg / w: exact from the first interval for a steady rate,
 * and the same as avg once w has grown to 1.
 */
#include "proto.h"

#include <errno.h>
#include <math.h>

#define NS_PER_S 1e9

int twl_rdma_meter_init(struct twl_rdma_meter *m, uint64_t window_ns)
{
    if (window_ns == 0)
        return -EINVAL;
    *m = (struct twl_rdma_meter){.window_ns = (double)window_ns};
    return 0;
}

/* Blends one interval of dt_ns (> 0) into an estimator; returns the gain the interval's
 * bytes got, for completions that arrive at the same instant. */
static double blend(double window_ns, double dt_ns, double bytes, double records, double *avg_b,
                    double *avg_r, double *weight)
{
    double x = dt_ns / window_ns;
    double keep = exp(-x);
    double share = -expm1(-x); /* 1 - keep, without cancellation when dt << W */
    double gain = share / dt_ns;
    *avg_b = *avg_b * keep + bytes * gain;
    *avg_r = *avg_r * keep + records * gain;
    *weight = *weight * keep + share;
    return gain;
}

void twl_rdma_meter_add(struct twl_rdma_meter *m, uint64_t now_ns, uint64_t bytes, uint64_t records,
                        bool backlogged)
{
    if (!m->started) {
        m->started = true;
        m->last_ns = now_ns;
        return;
    }
    double b = (double)bytes, r = (double)records;
    if (now_ns <= m->last_ns) {
        /* No time passed: part of the interval that just ended, when that one was counted. */
        m->tp_bytes += b * m->tp_gain;
        m->tp_records += r * m->tp_gain;
        if (backlogged) {
            m->cap_bytes += b * m->cap_gain;
            m->cap_records += r * m->cap_gain;
        }
        return;
    }
    double dt = (double)(now_ns - m->last_ns);
    m->last_ns = now_ns;
    m->tp_gain = blend(m->window_ns, dt, b, r, &m->tp_bytes, &m->tp_records, &m->tp_weight);
    if (backlogged)
        m->cap_gain = blend(m->window_ns, dt, b, r, &m->cap_bytes, &m->cap_records, &m->cap_weight);
    else
        m->cap_gain = 0; /* the interval was not counted: nothing can join it */
}

static int report(double avg_b, double avg_r, double weight, double *bytes_per_s,
                  double *records_per_s)
{
    double b = 0, r = 0;
    int rc = -ENODATA;
    if (weight > 0) {
        b = avg_b / weight * NS_PER_S;
        r = avg_r / weight * NS_PER_S;
        rc = 0;
    }
    if (bytes_per_s != NULL)
        *bytes_per_s = b;
    if (records_per_s != NULL)
        *records_per_s = r;
    return rc;
}

int twl_rdma_meter_rate(const struct twl_rdma_meter *m, uint64_t now_ns, double *bytes_per_s,
                        double *records_per_s)
{
    double avg_b = m->tp_bytes, avg_r = m->tp_records, weight = m->tp_weight;
    if (m->started && now_ns > m->last_ns) {
        /* Nothing completed since the last completion so far: an interval of rate 0. */
        double x = (double)(now_ns - m->last_ns) / m->window_ns;
        double keep = exp(-x);
        avg_b *= keep;
        avg_r *= keep;
        weight = weight * keep - expm1(-x);
    }
    return report(avg_b, avg_r, weight, bytes_per_s, records_per_s);
}

int twl_rdma_meter_capacity(const struct twl_rdma_meter *m, double *bytes_per_s,
                            double *records_per_s)
{
    return report(m->cap_bytes, m->cap_records, m->cap_weight, bytes_per_s, records_per_s);
}
