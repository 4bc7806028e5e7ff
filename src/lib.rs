//! outrigger: a sidecar that serves Dapr's bindings API over gRPC and HTTP.
//!
//! The library holds everything, so tests can start whole sidecars in-process
//! on port 0; `main.rs` only parses flags and maps the result to an exit code.

pub mod api;
pub mod app_channel;
pub mod bindings;
pub mod cli;
pub mod config;
pub mod json;
pub mod kubernetes;
pub mod launcher;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod runtime;
pub mod status;
pub mod tasks;

pub use runtime::{RuntimeError, Sidecar, SidecarConfig, run_until_signal as run_sidecar};

/// Code generated from `proto/` (Dapr's package and message names).
pub mod proto {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("dapr.proto.common.v1");
        }
    }
    pub mod runtime {
        pub mod v1 {
            tonic::include_proto!("dapr.proto.runtime.v1");
        }
    }
    /// Encoded descriptors of every proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("dapr_descriptor");
}
