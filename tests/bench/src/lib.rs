//! realload's load harnesses: `loadgen` (the extender over loopback HTTP, against a floor server in
//! the same run) and `deschedbench` (a live descheduler run against the API simulator), and the
//! synthetic clusters ([`synth`]) that they and the criterion benchmarks share.
#![forbid(unsafe_code)]

pub mod synth;
