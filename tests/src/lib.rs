//! realload's workspace-level test support: the Kubernetes API simulator ([`apisim`]) that the
//! scenario tests run the binaries against, a small renderer for `deploy/` ([`kustomize`]), the
//! synthetic cluster ([`synth`]), the decision-quality simulator ([`dq`]) and shared test helpers
//! ([`support`]).
#![forbid(unsafe_code)]

pub mod apisim;
pub mod dq;
pub mod kustomize;
pub mod support;
pub mod synth;
