//! Encoding jobs: requests, leases, phases, my-jobs.
