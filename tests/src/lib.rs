//! realload's workspace-level test support: the Kubernetes API simulator ([`apisim`]) that the
//! scenario tests run the binaries against, a small renderer for `deploy/` ([`kustomize`]), the
//! synthetic cluster ([`synth`]) and shared test helpers ([`support`]). The decision-quality
//! simulator is its own crate (`tests/dq`), and so is the end-to-end suite (`tests/e2e`).
#![forbid(unsafe_code)]

pub mod apisim;
pub mod kustomize;
pub mod support;
pub mod synth;
