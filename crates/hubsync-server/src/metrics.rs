//! Prometheus metrics: syncs started, succeeded and failed per group and
//! member; rows moved; conflicts by policy; sync durations; per member the
//! changes waiting and the seconds since its last successful sync.
