//! realload's workspace-level test support: the Kubernetes API simulator ([`apisim`]) that the
//! scenario tests run the binaries against.
#![forbid(unsafe_code)]

pub mod apisim;
