//! realload's workspace-level test support: the Kubernetes API simulator ([`apisim`]) that the
//! scenario tests run the binaries against, and a small renderer for `deploy/` ([`kustomize`]).
#![forbid(unsafe_code)]

pub mod apisim;
pub mod dq;
pub mod kustomize;
pub mod synth;
