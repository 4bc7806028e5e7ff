//! outrigger-bench: measures outrigger (release build, a separate process),
//! Dapr's daprd (when its binary is there) and a direct rdkafka client in the
//! same run, on the same Apache Kafka broker, driven by the same load
//! generator: output throughput and latency over gRPC and HTTP, input delivery
//! to a gRPC and an HTTP app, and each sidecar's footprint (CPU per message,
//! RSS, start to ready, binary size). Prints Markdown tables, the
//! `## Side by side` table among them; `--json PATH` also writes the figures
//! for `scripts/bench-chart.py`.
//!
//! Run with `scripts/bench.sh` (release build; starts its own broker).

mod apps;
mod broker;
mod h2load;
mod load;
mod proc_stats;
mod report;
mod sidecar;
mod soak;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use load::Transport;
use report::{InRow, OutRow, Report, SidecarFootprint};
use sidecar::{Binaries, Contender, RunningSidecar};

#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub concurrency: Vec<usize>,
    pub payloads: Vec<usize>,
    pub input_messages: usize,
    pub partitions: i32,
    pub starts: usize,
    /// How long to wait for a quiet machine before timing starts.
    pub quiet_wait: Duration,
    pub soak_messages: usize,
    pub transports: Vec<Transport>,
    pub brokers: Option<String>,
    pub kafka_dir: Option<PathBuf>,
    pub daprd: Option<PathBuf>,
    pub no_daprd: bool,
    pub json: Option<PathBuf>,
    pub h2load: bool,
    /// `producerLinger` for outrigger's output component and `linger.ms` of
    /// the direct producer; None: outrigger's adaptive default, against the
    /// faster of the direct producers lingering 1 ms and 0 ms.
    pub linger_ms: Option<u64>,
    /// Worker threads of the load generator's runtime (callers and apps).
    pub generator_threads: usize,
}

const HELP: &str =
    "outrigger-bench [--quick] [--duration SECS] [--concurrency 1,16,64] [--payloads 100,10240]
    [--input-messages N] [--partitions N] [--starts N] [--quiet-wait SECS]
    [--transports grpc,http]
    [--brokers HOST:PORT | --kafka-dir DIR] [--daprd PATH | --no-daprd] [--no-h2load]
    [--linger MS] [--generator-threads N] [--json PATH] [--soak MESSAGES]

Broker: --brokers, else the running broker of --kafka-dir DIR (env OUTRIGGER_KAFKA_DIR;
a directory of scripts/kafka.sh), else one started for the run with scripts/kafka.sh.
daprd: --daprd PATH (env OUTRIGGER_DAPRD), else .tools/bin/daprd if present.
--quiet-wait SECS: how long to wait, before timing starts, for at most 10% of the CPUs to be busy
over half a second (default 60; 0 with --quick).
h2load (nghttp2-client), when on PATH, cross-checks gRPC and HTTP at the highest concurrency.
--linger MS: outrigger's producerLinger and the direct producer's linger.ms (default: outrigger's
adaptive default, compared with the faster of a direct producer lingering 1 ms and one sending at
once; daprd's producer, sarama, has no linger: it sends at once).
--generator-threads N: tokio worker threads running the callers and the apps (default 1: on a
small machine the generator competes with the sidecar for cores; one thread spares it the
cross-thread wake-ups and lock contention of sharing HTTP/2 connections between threads).";

fn parse_args() -> Options {
    let mut o = Options {
        duration: Duration::from_secs(5),
        concurrency: vec![1, 16, 64],
        payloads: vec![100, 10 * 1024],
        input_messages: 50_000,
        partitions: 4,
        starts: 20,
        quiet_wait: Duration::from_secs(60),
        soak_messages: 0,
        transports: vec![Transport::Grpc, Transport::Http],
        brokers: std::env::var("OUTRIGGER_BENCH_BROKERS").ok(),
        kafka_dir: std::env::var_os("OUTRIGGER_KAFKA_DIR").map(PathBuf::from),
        daprd: std::env::var_os("OUTRIGGER_DAPRD").map(PathBuf::from),
        no_daprd: false,
        json: None,
        h2load: true,
        linger_ms: None,
        generator_threads: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let list = |s: &str| {
        s.split(',')
            .map(|x| x.trim().parse().expect("a number"))
            .collect::<Vec<usize>>()
    };
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let flag = |o: &mut Options| match args[i].as_str() {
            "--quick" => {
                o.duration = Duration::from_millis(500);
                o.concurrency = vec![1, 16];
                o.payloads = vec![100];
                o.input_messages = 2_000;
                o.starts = 3;
                o.quiet_wait = Duration::ZERO;
                o.h2load = false;
                true
            }
            "--no-daprd" => {
                o.no_daprd = true;
                true
            }
            "--no-h2load" => {
                o.h2load = false;
                true
            }
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            _ => false,
        };
        if flag(&mut o) {
            i += 1;
            continue;
        }
        match args[i].as_str() {
            "--duration" => o.duration = Duration::from_secs_f64(value.parse().expect("seconds")),
            "--concurrency" => o.concurrency = list(&value),
            "--payloads" => o.payloads = list(&value),
            "--input-messages" => o.input_messages = value.parse().expect("a number"),
            "--partitions" => o.partitions = value.parse().expect("a number"),
            "--starts" => o.starts = value.parse::<usize>().expect("a number").max(1),
            "--quiet-wait" => {
                o.quiet_wait =
                    Duration::from_secs(value.parse::<u64>().expect("a number of seconds"))
            }
            "--soak" => o.soak_messages = value.parse().expect("a number"),
            "--brokers" => o.brokers = Some(value),
            "--kafka-dir" => o.kafka_dir = Some(PathBuf::from(value)),
            "--daprd" => o.daprd = Some(PathBuf::from(value)),
            "--json" => o.json = Some(PathBuf::from(value)),
            "--linger" => o.linger_ms = Some(value.parse().expect("milliseconds")),
            "--generator-threads" => {
                o.generator_threads = value.parse::<usize>().expect("a number").max(1)
            }
            "--transports" => {
                o.transports = value
                    .split(',')
                    .map(|t| match t.trim() {
                        "grpc" => Transport::Grpc,
                        "http" => Transport::Http,
                        other => panic!("unknown transport {other} (grpc, http)"),
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}\n{HELP}"),
        }
        i += 2;
    }
    o
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let t = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let res = admin
        .create_topics(&t, &AdminOptions::new())
        .await
        .expect("create topic");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// One `bindings.kafka` component, the same file for both sidecars
/// (`authType: none` is what daprd needs for a plaintext broker; both use
/// acks=all: outrigger always, daprd by its default `producerRequiredAcks: all`).
fn component(dir: &Path, name: &str, brokers: &str, topic: &str, extra: &[(&str, &str)]) {
    let mut items = format!(
        "  - name: brokers\n    value: \"{brokers}\"\n  - name: publishTopic\n    value: \"{topic}\"\n  - name: authType\n    value: \"none\"\n"
    );
    for (k, v) in extra {
        items.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    let doc = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n{items}"
    );
    std::fs::write(dir.join(format!("{name}.yaml")), doc).unwrap();
}

/// The sidecar under test: the release `outrigger` binary next to this one.
fn outrigger_bin() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let bin = me.with_file_name("outrigger");
    assert!(
        bin.exists(),
        "{} not found: build with scripts/bench.sh",
        bin.display()
    );
    bin
}

fn daprd_bin(o: &Options) -> Result<PathBuf, String> {
    if o.no_daprd {
        return Err("--no-daprd".into());
    }
    let p = o
        .daprd
        .clone()
        .unwrap_or_else(|| repo_root().join(".tools/bin/daprd"));
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "no daprd binary at {} (scripts/daprd.sh builds it)",
            p.display()
        ))
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Accepted connections with TCP_NODELAY, as a real app server would set.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    })
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let o = parse_args();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.generator_threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(o));
}

async fn run(o: Options) {
    let broker = broker::Broker::acquire(
        o.brokers.clone(),
        o.kafka_dir.clone(),
        &repo_root().join("scripts/kafka.sh"),
    );
    let brokers = broker.addr.clone();
    let logs = tempfile::Builder::new()
        .prefix("outrigger-bench-logs")
        .tempdir()
        .unwrap();
    let daprd = daprd_bin(&o);
    let bins = Binaries {
        outrigger: outrigger_bin(),
        daprd: daprd.as_ref().ok().cloned(),
        logs: logs.path().to_path_buf(),
    };
    let mut contenders = vec![Contender::Outrigger];
    if bins.daprd.is_some() {
        contenders.push(Contender::Daprd);
    }
    let mut r = Report::new(&o, &broker, &bins, num_cpus(), cpu_model());
    r.print_header(&daprd);
    let run_id = std::process::id();

    if o.soak_messages > 0 {
        let topic = format!("soak-{run_id}");
        create_topic(&brokers, &topic, o.partitions).await;
        soak::run(&brokers, &topic, o.soak_messages, 16, |resources, port| {
            sidecar::start(&bins, Contender::Outrigger, resources, Some((port, "grpc")))
        })
        .await;
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let out_topic = format!("bench-out-{run_id}");
    create_topic(&brokers, &out_topic, o.partitions).await;
    let linger = o.linger_ms.map(|ms| format!("{ms}ms"));
    let mut out_meta = vec![("direction", "output")];
    if let Some(l) = &linger {
        // An outrigger field; daprd ignores it (sarama has no linger).
        out_meta.push(("producerLinger", l.as_str()));
    }
    component(dir.path(), "bench", &brokers, &out_topic, &out_meta);

    // Start to ready, over several cold starts of each binary, one after the
    // other, once the machine is quiet: what ran just before (a build, a
    // broker starting) can keep both cores busy, which is not the sidecar's
    // start. Each contender's block begins with one start left out, so that
    // neither is timed in the wake of the other (caches, the broker's side of
    // the last client's connections).
    let mut foot: HashMap<Contender, SidecarFootprint> = HashMap::new();
    for &c in &contenders {
        let waited = Instant::now();
        let busy =
            proc_stats::wait_for_quiet(0.10, Duration::from_millis(500), waited + o.quiet_wait);
        println!(
            "- start to ready of {}: timed once the machine was {:.0}% busy over 0.5 s (waited {:.1} s; the limit is 10%, or {} s of waiting); {} starts after one left out",
            c.name(),
            busy * 100.0,
            waited.elapsed().as_secs_f64(),
            o.quiet_wait.as_secs(),
            o.starts
        );
        drop(sidecar::start(&bins, c, dir.path(), None));
        let mut starts = Vec::new();
        for _ in 0..o.starts {
            let s = sidecar::start(&bins, c, dir.path(), None);
            starts.push(s.ready_after);
        }
        let f = foot.entry(c).or_default();
        f.binary_bytes = std::fs::metadata(bins.path(c))
            .map(|m| m.len())
            .unwrap_or(0);
        f.starts = starts.len();
        f.start_ms = median(starts).as_secs_f64() * 1000.0;
    }

    // Both output sidecars run through the whole output phase; rows alternate
    // between them, so that a change in the machine's load hits both alike.
    let mut running: Vec<(Contender, RunningSidecar)> = Vec::new();
    for &c in &contenders {
        let s = sidecar::start(&bins, c, dir.path(), None);
        load::warm_up(&s).await;
        running.push((c, s));
    }
    // Idle: connected to the broker, a few calls served, nothing in flight.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (c, s) in &running {
        foot.get_mut(c).unwrap().rss_idle_kb = proc_stats::rss_kb(s.pid());
    }

    // Two direct producers: one lingering 1 ms (or `--linger`), one sending at
    // once as daprd's producer (sarama) does, daprd's baseline. outrigger's
    // baseline: with `--linger`, the producer with that linger; without it
    // (outrigger's adaptive default: a lone call at once, overlapping calls
    // batched), the faster of the two at each point, the harder reference.
    let out_linger = o.linger_ms.unwrap_or(1);
    let adaptive = o.linger_ms.is_none();
    let mut lingers = vec![out_linger];
    if (bins.daprd.is_some() || adaptive) && out_linger != 0 {
        lingers.push(0);
    }
    r.print_output_header(out_linger, bins.daprd.is_some(), adaptive);
    let broker_cpu = || broker.pid.map(proc_stats::cpu_seconds).unwrap_or(0.0);
    for &payload in &o.payloads {
        for &conc in &o.concurrency {
            let mut directs = HashMap::new();
            for &linger in &lingers {
                let (g0, b0) = (proc_stats::self_cpu_seconds(), broker_cpu());
                let direct = load::run(
                    Transport::Direct,
                    &brokers,
                    &out_topic,
                    None,
                    payload,
                    conc,
                    o.duration,
                    linger,
                )
                .await;
                let (g1, b1) = (proc_stats::self_cpu_seconds(), broker_cpu());
                let mut d = OutRow::new(None, Transport::Direct, payload, conc, &direct, &direct)
                    .with_cpu(None, g1 - g0, b1 - b0);
                d.linger_ms = Some(linger);
                r.push_output(d);
                directs.insert(linger, direct);
            }
            for (c, s) in &running {
                let base = match c {
                    Contender::Daprd => &directs[lingers.last().unwrap()],
                    Contender::Outrigger if adaptive => directs
                        .values()
                        .max_by(|a, b| a.rate().total_cmp(&b.rate()))
                        .unwrap(),
                    Contender::Outrigger => &directs[&out_linger],
                };
                for &t in &o.transports {
                    let pid = s.pid();
                    let (s0, g0, b0) = (
                        proc_stats::cpu_seconds(pid),
                        proc_stats::self_cpu_seconds(),
                        broker_cpu(),
                    );
                    let stats = load::run(
                        t,
                        &brokers,
                        &out_topic,
                        Some(s),
                        payload,
                        conc,
                        o.duration,
                        0,
                    )
                    .await;
                    let (s1, g1, b1) = (
                        proc_stats::cpu_seconds(pid),
                        proc_stats::self_cpu_seconds(),
                        broker_cpu(),
                    );
                    let row = OutRow::new(Some(*c), t, payload, conc, &stats, base).with_cpu(
                        Some(s1 - s0),
                        g1 - g0,
                        b1 - b0,
                    );
                    r.push_output(row);
                }
            }
        }
    }
    // The independent load tool, at the highest concurrency and smallest payload.
    if o.h2load {
        match h2load::find() {
            Some(tool) => {
                r.print_h2load_header(&tool);
                let conc = *o.concurrency.iter().max().unwrap();
                let payload = o.payloads[0];
                for (c, s) in &running {
                    for &t in &o.transports {
                        let pid = s.pid();
                        let s0 = proc_stats::cpu_seconds(pid);
                        let res = h2load::run(&tool, t, s, payload, conc, o.duration, logs.path());
                        let cpu = proc_stats::cpu_seconds(pid) - s0;
                        r.push_h2load(*c, t, payload, conc, res, cpu);
                    }
                }
            }
            None => println!(
                "\nh2load (nghttp2-client) not found: no cross-check with an independent load tool.\n"
            ),
        }
    }
    for (c, s) in &running {
        foot.get_mut(c).unwrap().rss_peak_kb = proc_stats::peak_rss_kb(s.pid());
    }
    drop(running);

    let in_topic = format!("bench-in-{run_id}");
    create_topic(&brokers, &in_topic, o.partitions).await;
    load::prefill(&brokers, &in_topic, o.input_messages, 100).await;
    r.print_input_header();
    let direct_in = load::direct_consume(&brokers, &in_topic, o.input_messages).await;
    r.push_input(InRow {
        contender: None,
        app: "",
        rate: direct_in,
        direct: direct_in,
        cpu_s: None,
        rss_peak_kb: None,
        messages: o.input_messages,
    });
    for &c in &contenders {
        for protocol in ["grpc", "http"] {
            let run = apps::measure_input(
                &brokers,
                &in_topic,
                o.input_messages,
                protocol,
                c.name(),
                &[],
                |resources, port| sidecar::start(&bins, c, resources, Some((port, protocol))),
            )
            .await;
            let f = foot.get_mut(&c).unwrap();
            f.rss_peak_input_kb = f.rss_peak_input_kb.max(run.rss_peak_kb);
            r.push_input(InRow {
                contender: Some(c),
                app: protocol,
                rate: run.rate,
                direct: direct_in,
                cpu_s: Some(run.cpu_s),
                rss_peak_kb: Some(run.rss_peak_kb),
                messages: o.input_messages,
            });
        }
    }
    // outrigger's key-ordered mode (no daprd equivalent): 1,000 distinct keys,
    // up to 64 in flight per partition, against a direct consumer of the same topic.
    if contenders.contains(&Contender::Outrigger) {
        let keyed_topic = format!("bench-in-keys-{run_id}");
        create_topic(&brokers, &keyed_topic, o.partitions).await;
        load::prefill_keys(&brokers, &keyed_topic, o.input_messages, 100, 1000).await;
        let direct_keyed = load::direct_consume(&brokers, &keyed_topic, o.input_messages).await;
        let c = Contender::Outrigger;
        let run = apps::measure_input(
            &brokers,
            &keyed_topic,
            o.input_messages,
            "grpc",
            "outrigger-keys",
            &[("deliveryOrder", "key"), ("maxInFlightPerPartition", "64")],
            |resources, port| sidecar::start(&bins, c, resources, Some((port, "grpc"))),
        )
        .await;
        r.push_input(InRow {
            contender: Some(c),
            app: "grpc (deliveryOrder key, 1,000 keys, 64 per partition)",
            rate: run.rate,
            direct: direct_keyed,
            cpu_s: Some(run.cpu_s),
            rss_peak_kb: Some(run.rss_peak_kb),
            messages: o.input_messages,
        });
    }

    r.set_footprint(foot);
    r.print_footprint();
    r.print_side_by_side(&daprd);
    r.print_targets();
    println!("\n- load average at the end: {}", proc_stats::loadavg());
    if let Some(path) = &o.json {
        r.write_json(path);
        println!("- figures written to {}", path.display());
    }
}
