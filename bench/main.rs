//! outrigger-bench: measures outrigger (release build, a separate process)
//! against a direct rdkafka client in the same run, on the same broker:
//! output throughput and latency (gRPC, HTTP, direct producer), input delivery
//! rate (gRPC app, HTTP app, direct consumer), and footprint (RSS, CPU per
//! message, start-to-ready time, binary size). Prints Markdown tables.
//!
//! Run with `scripts/bench.sh` (builds in release mode, starts its own broker).

mod apps;
mod load;
mod proc_stats;
mod soak;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use load::{Stats, Transport};

#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    concurrency: Vec<usize>,
    payloads: Vec<usize>,
    input_messages: usize,
    partitions: i32,
    starts: usize,
    soak_messages: usize,
    transports: Vec<Transport>,
}

fn parse_args() -> Options {
    let mut o = Options {
        duration: Duration::from_secs(5),
        concurrency: vec![1, 16, 64],
        payloads: vec![100, 10 * 1024],
        input_messages: 50_000,
        partitions: 4,
        starts: 20,
        soak_messages: 0,
        transports: vec![Transport::Grpc, Transport::Http],
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
        match args[i].as_str() {
            "--quick" => {
                o.duration = Duration::from_millis(500);
                o.concurrency = vec![1, 16];
                o.payloads = vec![100];
                o.input_messages = 2_000;
                o.starts = 3;
                i += 1;
                continue;
            }
            "--duration" => o.duration = Duration::from_secs_f64(value.parse().expect("seconds")),
            "--concurrency" => o.concurrency = list(&value),
            "--payloads" => o.payloads = list(&value),
            "--input-messages" => o.input_messages = value.parse().expect("a number"),
            "--partitions" => o.partitions = value.parse().expect("a number"),
            "--starts" => o.starts = value.parse().expect("a number"),
            "--soak" => o.soak_messages = value.parse().expect("a number"),
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
            "-h" | "--help" => {
                println!(
                    "outrigger-bench [--quick] [--duration SECS] [--concurrency 1,16,64] [--payloads 100,10240]\n\
                     \t[--input-messages N] [--partitions N] [--starts N] [--transports grpc,http] [--soak MESSAGES]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker() -> (Killed, String) {
    let tansu = std::env::var_os("OUTRIGGER_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/tansu"));
    assert!(
        tansu.exists(),
        "tansu not found at {}: run scripts/test-deps.sh",
        tansu.display()
    );
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Killed(child), format!("127.0.0.1:{port}"))
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let t = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    admin
        .create_topics(&t, &AdminOptions::new())
        .await
        .expect("create topic");
}

fn component(dir: &Path, name: &str, brokers: &str, topic: &str, extra: &[(&str, &str)]) {
    let mut items = format!(
        "  - name: brokers\n    value: \"{brokers}\"\n  - name: publishTopic\n    value: \"{topic}\"\n"
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

struct RunningSidecar {
    child: Killed,
    http: u16,
    grpc: u16,
    ready_after: Duration,
}

fn start_sidecar(resources: &Path, app: Option<(u16, &str)>) -> RunningSidecar {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(outrigger_bin());
    cmd.args(["sidecar", "--app-id", "bench", "--log-level", "warn"])
        .args([
            "--dapr-http-port",
            &http.to_string(),
            "--dapr-grpc-port",
            &grpc.to_string(),
        ])
        .args(["--dapr-listen-addresses", "127.0.0.1"])
        .arg("--resources-path")
        .arg(resources)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some((port, protocol)) = app {
        cmd.args(["--app-port", &port.to_string(), "--app-protocol", protocol]);
    }
    let started = Instant::now();
    let child = Killed(cmd.spawn().expect("start outrigger"));
    let ready_after = wait_healthz(http, started);
    RunningSidecar {
        child,
        http,
        grpc,
        ready_after,
    }
}

/// Polls /v1.0/healthz until 204; returns the time since `started`.
fn wait_healthz(port: u16, started: Instant) -> Duration {
    use std::io::{Read, Write};
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ =
                s.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 32];
            if let Ok(n) = s.read(&mut buf) {
                if buf[..n].starts_with(b"HTTP/1.1 204") {
                    return started.elapsed();
                }
            }
        }
        assert!(Instant::now() < deadline, "sidecar not ready within 30 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let o = parse_args();
    let (_broker, brokers) = start_broker();
    let dir = tempfile::tempdir().unwrap();
    let run_id = std::process::id();
    if o.soak_messages > 0 {
        let topic = format!("soak-{run_id}");
        create_topic(&brokers, &topic, o.partitions).await;
        println!("# outrigger soak\n");
        println!(
            "- date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!("- machine: {} cores, {}", num_cpus(), cpu_model());
        println!(
            "- broker: tansu (memory storage) on loopback, topic with {} partitions",
            o.partitions
        );
        soak::run(&brokers, &topic, o.soak_messages, 16, |resources, port| {
            start_sidecar(resources, Some((port, "grpc")))
        })
        .await;
        return;
    }
    let out_topic = format!("bench-out-{run_id}");
    create_topic(&brokers, &out_topic, o.partitions).await;
    component(
        dir.path(),
        "bench",
        &brokers,
        &out_topic,
        &[("direction", "output")],
    );

    println!("# outrigger-bench\n");
    println!(
        "- date: {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!("- machine: {} cores, {}", num_cpus(), cpu_model());
    println!(
        "- broker: tansu (memory storage) on loopback, topic with {} partitions",
        o.partitions
    );
    println!("- options: {o:?}\n");

    // Start to ready, over several cold starts of the release binary.
    let mut starts = Vec::new();
    for _ in 0..o.starts {
        let s = start_sidecar(dir.path(), None);
        starts.push(s.ready_after);
    }
    let bin_size = std::fs::metadata(outrigger_bin())
        .map(|m| m.len())
        .unwrap_or(0);

    let sidecar = start_sidecar(dir.path(), None);
    let pid = sidecar.child.0.id();
    // Let the producer connect before the idle reading.
    load::warm_up(&sidecar, "bench").await;
    let rss_idle = proc_stats::rss_kb(pid);

    println!("## Output: InvokeBinding / POST /v1.0/bindings vs direct rdkafka producer\n");
    println!(
        "acks=all on all three; `ratio` = msgs/s of the row over direct at the same concurrency and payload.\n"
    );
    println!(
        "| transport | payload | concurrency | msgs/s | ratio | p50 ms | p99 ms | p999 ms | added p50 ms | added p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cpu_before = proc_stats::cpu_seconds(pid);
    let mut sidecar_msgs = 0u64;
    let mut summary: Vec<(Transport, usize, usize, Stats, Stats)> = Vec::new();
    for &payload in &o.payloads {
        for &c in &o.concurrency {
            let direct = load::run(
                Transport::Direct,
                &brokers,
                &out_topic,
                &sidecar,
                payload,
                c,
                o.duration,
            )
            .await;
            print_row(Transport::Direct, payload, c, &direct, &direct);
            for &t in &o.transports {
                let s = load::run(t, &brokers, &out_topic, &sidecar, payload, c, o.duration).await;
                sidecar_msgs += s.count;
                print_row(t, payload, c, &s, &direct);
                summary.push((t, payload, c, s, direct.clone()));
            }
        }
    }
    let cpu_used = proc_stats::cpu_seconds(pid) - cpu_before;
    let rss_peak = proc_stats::peak_rss_kb(pid);
    drop(sidecar);

    println!("\n## Input: delivery rate to an app vs direct rdkafka consumer\n");
    let in_topic = format!("bench-in-{run_id}");
    create_topic(&brokers, &in_topic, o.partitions).await;
    load::prefill(&brokers, &in_topic, o.input_messages, 100).await;
    println!(
        "{} messages of 100 B on {} partitions, read from the oldest offset.\n",
        o.input_messages, o.partitions
    );
    println!("| reader | msgs/s | ratio |");
    println!("|---|---|---|");
    let direct_in = load::direct_consume(&brokers, &in_topic, o.input_messages).await;
    println!("| direct rdkafka consumer | {:.0} | 1.00 |", direct_in);
    for protocol in ["grpc", "http"] {
        let rate = apps::measure_input(
            &brokers,
            &in_topic,
            o.input_messages,
            protocol,
            |resources, port| start_sidecar(resources, Some((port, protocol))).child,
        )
        .await;
        println!(
            "| outrigger → {protocol} app | {rate:.0} | {:.2} |",
            rate / direct_in
        );
    }

    println!("\n## Footprint\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| release binary size | {:.1} MB |", bin_size as f64 / 1e6);
    println!(
        "| start to /v1.0/healthz = 204 (median of {}) | {} ms |",
        starts.len(),
        ms(median(starts.clone()))
    );
    println!(
        "| RSS idle (producer connected) | {:.1} MB |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| RSS peak during the output runs | {:.1} MB |",
        rss_peak as f64 / 1024.0
    );
    if sidecar_msgs > 0 {
        println!(
            "| sidecar CPU per 100k output messages (all output rows) | {:.2} s |",
            cpu_used / sidecar_msgs as f64 * 100_000.0
        );
    }

    println!("\n## Targets (ratios from this run)\n");
    for (t, payload, c, s, d) in &summary {
        if *c == 64 && *payload == o.payloads[0] {
            let target = if *t == Transport::Grpc { 0.8 } else { 0.6 };
            let ratio = s.rate() / d.rate();
            println!(
                "- {t:?} at concurrency 64, {payload} B: {ratio:.2}× direct (target ≥ {target}) {}",
                verdict(ratio >= target)
            );
        }
        if *c == 1 && *payload == o.payloads[0] {
            let p50 = s.p(0.5).saturating_sub(d.p(0.5));
            let p99 = s.p(0.99).saturating_sub(d.p(0.99));
            println!(
                "- {t:?} at concurrency 1: added p50 {} ms (target ≤ 0.3) {}, added p99 {} ms (target ≤ 1) {}",
                ms(p50),
                verdict(p50 <= Duration::from_micros(300)),
                ms(p99),
                verdict(p99 <= Duration::from_millis(1))
            );
        }
    }
    let idle_mb = rss_idle as f64 / 1024.0;
    println!(
        "- idle RSS {idle_mb:.1} MB (target ≤ 15) {}",
        verdict(idle_mb <= 15.0)
    );
    let start_ms = median(starts).as_secs_f64() * 1000.0;
    println!(
        "- start to ready {start_ms:.1} ms (target ≤ 50) {}",
        verdict(start_ms <= 50.0)
    );
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

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn print_row(t: Transport, payload: usize, c: usize, s: &Stats, direct: &Stats) {
    let added = |q: f64| {
        if t == Transport::Direct {
            "-".to_string()
        } else {
            ms(s.p(q).saturating_sub(direct.p(q)))
        }
    };
    println!(
        "| {} | {} B | {c} | {:.0} | {:.2} | {} | {} | {} | {} | {} |",
        t.label(),
        payload,
        s.rate(),
        s.rate() / direct.rate(),
        ms(s.p(0.5)),
        ms(s.p(0.99)),
        ms(s.p(0.999)),
        added(0.5),
        added(0.99)
    );
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
