//! The `outrigger` binary: parse flags, set up logging, run, map to an exit code.

use outrigger::cli::Command;

fn main() {
    // Not `Cli::parse()`: `run` takes its flags anywhere before `--`, as `dapr run` does.
    // Before the flags are parsed, so that the two overlap; `--help` and
    // bad flags exit before the warm-up matters.
    let command = std::env::args_os().nth(1);
    if command
        .as_ref()
        .is_some_and(|c| c == "sidecar" || c == "run")
    {
        outrigger::runtime::prewarm();
    }
    let cli = outrigger::launcher::args::parse_cli(std::env::args_os());
    let code = match cli.command {
        Command::Sidecar(args) if args.kubernetes.wanted() => {
            outrigger::logging::init(&args.log_level, args.log_as_json, &args.app_id);
            run_async(
                args.worker_threads,
                outrigger::kubernetes::run_sidecar(args),
            )
        }
        Command::Sidecar(args) => {
            outrigger::logging::init(&args.log_level, args.log_as_json, &args.app_id);
            run_async(
                args.worker_threads,
                outrigger::run_sidecar(args.to_config()),
            )
        }
        Command::Injector(args) => {
            outrigger::logging::init(&args.log_level, args.log_as_json, "outrigger-injector");
            run_async(2, outrigger::kubernetes::injector::run(args))
        }
        Command::Run(args) => {
            run_async(args.sidecar.worker_threads, outrigger::launcher::run(args))
        }
    };
    outrigger::logging::flush();
    std::process::exit(code);
}

fn run_async(worker_threads: usize, fut: impl std::future::Future<Output = i32>) -> i32 {
    // One worker (the default) is this thread: the tasks the start-up spawns
    // (servers, the producer's) run here as soon as it waits, instead of each
    // waking a parked worker thread, which on two busy cores cost up to half
    // a millisecond of the time to ready.
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(worker_threads);
        b
    };
    match builder.enable_all().build() {
        Ok(rt) => {
            let code = rt.block_on(fut);
            // By now everything owed is delivered and committed; what may be
            // left on the blocking pool (a broker probe waiting for its
            // timeout) must not hold the exit, as dropping the runtime would.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
        Err(e) => {
            eprintln!("outrigger: cannot start the async runtime: {e}");
            1
        }
    }
}
