//! `outrigger run`: starts an app beside its sidecar, as `dapr run` does.

use crate::cli::RunArgs;

pub async fn run(_args: RunArgs) -> i32 {
    eprintln!("outrigger run: not implemented yet");
    2
}
