//! Integration tests, in one binary so that a change links once. Each module
//! starts what it needs (broker, sidecars, apps) on loopback and stops it.

mod support;

mod api_errors;
mod api_inprocess;
mod app_faults;
#[cfg(feature = "bench")]
mod bench_smoke;
mod broker_faults;
mod broker_restart;
mod config_errors;
mod conformance;
mod console;
mod cron;
mod deploy;
mod group_failover;
mod grpcurl;
mod hostile;
mod input_faults;
mod input_grpc;
mod input_http;
mod k8s;
mod kafka_auth;
mod key_order;
mod launcher;
mod metrics;
mod otlp;
mod output_grpc;
mod output_http;
mod quickstart;
mod sdk_go;
mod sdk_java;
mod sdk_node;
mod sdk_python;
mod sdk_rust;
mod secrets;
mod signals;
mod start_whole;
mod trace;
