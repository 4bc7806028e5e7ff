//! `outrigger run` as a user runs it: the built binary, real apps (the
//! quickstart's node and python apps, small scripts), a real broker where one
//! is needed. Checks the `dapr run` argument shape, the app's environment,
//! exit codes, signals (no orphans, ports freed) and the multi-app template.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

const LONG: Duration = Duration::from_secs(60);

fn args(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// PATH with the test venv first, so that `python3` has `requests`.
fn venv_path() -> String {
    let venv = python().parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A copy of the quickstart as the repository lays it out: the shipped template
/// and apps under examples/bindings, the sample component under components/,
/// pointed at the test broker with a fresh topic and group and nothing else
/// changed: it reads from the newest offset, and the template's `startAfter`
/// must hold the producer back until the consumer has joined.
fn quickstart_copy(broker: &Broker, topic: &str, app_port: u16) -> tempfile::TempDir {
    let repo = repo_root();
    let src = repo.join("examples/bindings");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("examples/bindings");

    let component = std::fs::read_to_string(repo.join("components/kafka_bindings.yaml")).unwrap();
    let component = component
        .replace("localhost:9092", &broker.addr())
        .replace("value: sample", &format!("value: {topic}"))
        .replace("value: group1", &format!("value: {}", unique("group")));
    assert!(component.contains(&broker.addr()) && component.contains(topic));
    assert!(
        !component.contains("initialOffset"),
        "the tutorial's component reads from the newest offset"
    );
    write(
        &tmp.path().join("components/kafka_bindings.yaml"),
        &component,
    );

    for file in ["nodeapp/app.js", "nodeapp/package.json", "pythonapp/app.py"] {
        std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
        std::fs::copy(src.join(file), root.join(file)).unwrap();
    }
    let modules = src.join("nodeapp/node_modules");
    assert!(
        modules.join("express").is_dir(),
        "run scripts/test-deps.sh (npm install in examples/bindings/nodeapp)"
    );
    std::os::unix::fs::symlink(&modules, root.join("nodeapp/node_modules")).unwrap();

    // The shipped template, with a free app port and a short, bounded producer.
    let text = std::fs::read_to_string(src.join("dapr.yaml")).unwrap();
    let mut template: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let apps = template["apps"].as_sequence_mut().unwrap();
    let node = apps
        .iter_mut()
        .find(|a| a["appID"] == "bindings-nodeapp")
        .expect("nodeapp in dapr.yaml");
    assert_eq!(node["appPort"].as_u64(), Some(3000));
    node["appPort"] = app_port.into();
    let py = apps
        .iter_mut()
        .find(|a| a["appID"] == "bindings-pythonapp")
        .expect("pythonapp in dapr.yaml");
    let env: serde_yaml::Mapping =
        serde_yaml::from_str("{ORDER_INTERVAL: '0.05', ORDER_COUNT: '20'}").unwrap();
    py["env"] = env.into();
    assert_eq!(
        py["startAfter"], "bindings-nodeapp",
        "the producer waits for the consumer"
    );
    assert_eq!(template["common"]["resourcesPaths"][0], "../../components");
    write(
        &root.join("dapr.yaml"),
        &serde_yaml::to_string(&template).unwrap(),
    );
    tmp
}

#[test]
fn quickstart_through_the_run_template() {
    let broker = Broker::start();
    let topic = unique("sample");
    broker.create_topic(&topic, 1);
    // Held by the test: the node app binds it (SO_REUSEADDR), nothing else can.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let dir = quickstart_copy(&broker, &topic, app_port);

    let template = dir.path().join("examples/bindings");
    let mut run = Launcher::start(
        &[OsString::from("-f"), template.clone().into()],
        &template,
        &[("PATH", venv_path())],
    );
    let node = "== APP - bindings-nodeapp == ";
    let py = "== APP - bindings-pythonapp == ";
    run.wait_line(&format!("{node}{{ orderId: 20 }}"), LONG);
    run.wait_line("Exited app bindings-pythonapp successfully", LONG);

    let lines = run.lines();
    let ready = lines
        .iter()
        .position(|l| l.contains("App bindings-nodeapp is ready"));
    let producer = lines.iter().position(|l| l.starts_with(py));
    assert!(
        ready.is_some() && ready < producer,
        "the producer started before the consumer was ready\n{}",
        run.output()
    );
    let orders: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(node))
        .filter(|l| l.starts_with("{ orderId:"))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (1..=20).map(|n| format!("{{ orderId: {n} }}")).collect();
    assert_eq!(orders, expected, "{}", run.output());
    assert_eq!(run.count(&format!("{node}Hello from Kafka!")), 20);
    assert_eq!(
        run.count(&format!("{py}<Response [204]>")),
        20,
        "{}",
        run.output()
    );
    // Each sidecar's lines are tagged with its app id.
    for id in ["bindings-nodeapp", "bindings-pythonapp"] {
        let tag = format!("== DAPR - {id} == ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{tag}Starting Dapr with id {id}."))),
            "{}",
            run.output()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&tag) && l.contains("outrigger initialized"))
        );
    }
    assert!(!processes_in(dir.path()).is_empty(), "the node app runs on");

    run.signal(libc::SIGINT);
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", run.output());
    assert!(run.count("== DAPR - bindings-nodeapp == Exited Dapr successfully") == 1);
    let left = processes_in(dir.path());
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_released(app_port, dir.path(), &[run.pid()]);
    assert!(!port_open(app_port), "nobody listens on the app port");
}

const PRINT_ENV: &str = r#"
import json, os, sys, time
keys = ["DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_ID", "APP_PORT", "DAPR_API_TOKEN"]
print("ENV " + json.dumps({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[1:]}))
while not os.path.exists(os.environ["STOP_FILE"]):
    time.sleep(0.05)
print("bye")
"#;

#[test]
fn tutorial_command_shape_and_app_environment() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("script.py"), PRINT_ENV);
    let components = dir.path().join("components");
    write(
        &components.join("tick.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: tick\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - name: schedule\n    value: \"@every 1h\"\n",
    );
    let stop = dir.path().join("stop");
    // Passed to the app, which does not listen: held so that nobody else does.
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let app_id = unique("tutorial");
    // As the tutorial writes it: launcher flags after the app command, and the
    // app's own arguments mixed in; after `--` everything is the app's.
    let mut argv = args(&["--app-id", &app_id, "python3", "script.py", "--verbose"]);
    argv.extend([
        "--components-path".into(),
        components.clone().into_os_string(),
    ]);
    argv.extend(args(&[
        "--app-port",
        &app_port.to_string(),
        "--",
        "--app-id",
        "not-the-launchers",
        "-p",
        "1",
    ]));
    let mut run = Launcher::start(
        &argv,
        dir.path(),
        &[
            ("STOP_FILE", stop.display().to_string()),
            ("DAPR_API_TOKEN", "token-for-the-app".into()),
        ],
    );
    let seen: serde_json::Value =
        serde_json::from_str(&run.wait_line("== APP == ENV ", LONG)).unwrap();
    let env = &seen["env"];
    assert_eq!(env["APP_ID"], app_id.as_str());
    assert_eq!(env["APP_PORT"], app_port.to_string());
    assert_eq!(env["DAPR_API_TOKEN"], "token-for-the-app");
    assert_eq!(
        seen["argv"],
        serde_json::json!(["--verbose", "--app-id", "not-the-launchers", "-p", "1"])
    );
    let http: u16 = env["DAPR_HTTP_PORT"].as_str().unwrap().parse().unwrap();
    let grpc: u16 = env["DAPR_GRPC_PORT"].as_str().unwrap().parse().unwrap();
    assert!(http != 0 && grpc != 0 && http != grpc);
    let banner = format!("Starting Dapr with id {app_id}. HTTP Port: {http}. gRPC Port: {grpc}");
    assert_eq!(run.count(&banner), 1, "{}", run.output());

    // The sidecar answers on those ports, with the component from --components-path.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let md: serde_json::Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{http}/v1.0/metadata"))
            .header("dapr-api-token", "token-for-the-app")
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(md["id"], app_id.as_str());
        assert_eq!(md["components"][0]["name"], "tick", "{md}");
        assert_eq!(md["appConnectionProperties"]["port"], app_port);

        let mut client = DaprClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        let mut request = tonic::Request::new(pb::GetMetadataRequest {});
        request
            .metadata_mut()
            .insert("dapr-api-token", "token-for-the-app".parse().unwrap());
        let md = client.get_metadata(request).await.unwrap().into_inner();
        assert_eq!(md.id, app_id);
    });

    // The app ends on its own: so does the run, with its code.
    write(&stop, "");
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", run.output());
    assert_eq!(run.count("== APP == bye"), 1);
    assert_eq!(run.count("Exited App successfully"), 1);
    assert_eq!(run.count("Exited Dapr successfully"), 1);
    // The ports the launcher picked: no process of this run listens there now
    // (another one on the machine may have taken them since).
    assert!(processes_in(dir.path()).is_empty());
    assert_released(http, dir.path(), &[run.pid()]);
    assert_released(grpc, dir.path(), &[run.pid()]);
}

#[test]
fn exit_code_is_the_apps() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Launcher::start(
        &args(&[
            "--app-id",
            "exits",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]),
        dir.path(),
        &[],
    );
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(3), "{}", run.output());
    assert_eq!(run.count("== APP == out"), 1, "{}", run.output());
    assert_eq!(run.count("== APP == err"), 1);
    assert_eq!(run.count("The App process exited with error code: 3"), 1);
    assert_eq!(run.count("Exited Dapr successfully"), 1);

    // Killed by a signal: non-zero (128 + the signal, as shells report it).
    let mut run = Launcher::start(
        &args(&["--app-id", "crashes", "sh", "-c", "kill -KILL $$"]),
        dir.path(),
        &[],
    );
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{}", run.output());

    // A command that does not exist: 127, and the sidecar is stopped.
    let mut run = Launcher::start(
        &args(&["--app-id", "missing", "no-such-command-for-outrigger"]),
        dir.path(),
        &[],
    );
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(127), "{}", run.output());
    assert!(run.output().contains("no-such-command-for-outrigger"));
}

/// An app that serves its port, leaves a grandchild that ignores SIGTERM, and
/// records the SIGTERM it gets.
const TRAPS_TERM: &str = r#"
import os, signal, socket, subprocess, sys
marker = sys.argv[1]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(os.environ["APP_PORT"])))
server.listen()
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('GRANDCHILD IGNORES SIGTERM', flush=True)\nwhile True: time.sleep(1)"])
def on_term(sig, frame):
    with open(marker, "w") as f:
        f.write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print(f"READY {os.getpid()} {grandchild.pid}", flush=True)
while True:
    signal.pause()
"#;

#[test]
fn sigterm_stops_the_app_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("app.py"), TRAPS_TERM);
    let marker = dir.path().join("got-term");
    // The ports are given, and held by the test from before the start to the
    // end: the sidecar and the app bind them (SO_REUSEADDR), nothing else can,
    // and that nobody listens on them afterwards says something.
    let ports = [(); 3].map(|_| ReservedPort::new());
    let [http, grpc, app_port] = ports.each_ref().map(ReservedPort::port);
    let mut run = Launcher::start(
        &[
            "--app-id".into(),
            "traps".into(),
            "--app-port".into(),
            app_port.to_string().into(),
            "--dapr-http-port".into(),
            http.to_string().into(),
            "-G".into(),
            grpc.to_string().into(),
            "--dapr-graceful-shutdown-seconds".into(),
            "2".into(),
            "python3".into(),
            "app.py".into(),
            marker.clone().into_os_string(),
        ],
        dir.path(),
        &[],
    );
    let ready = run.wait_line("== APP == READY ", LONG);
    run.wait_line("== APP == GRANDCHILD IGNORES SIGTERM", LONG);
    let pids: Vec<i32> = ready
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (app, grandchild) = (pids[0], pids[1]);
    assert!(alive(app) && alive(grandchild));
    for port in [http, grpc, app_port] {
        assert!(port_open(port), "port {port} serves\n{}", run.output());
    }

    run.signal(libc::SIGTERM);
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", run.output());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "SIGTERM");
    assert!(!alive(app), "the app {app} is still running");
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} is still running"
    );
    let left = processes_in(dir.path());
    assert!(left.is_empty(), "left behind: {left:?}");
    for port in [http, grpc, app_port] {
        assert!(!port_open(port), "port {port} still served");
        assert_released(port, dir.path(), &[run.pid(), app, grandchild]);
    }
    assert_eq!(run.count("Exited Dapr successfully"), 1, "{}", run.output());
}

/// `outrigger run` itself SIGKILLed (it cannot clean up): the kernel sends the
/// app SIGTERM (PR_SET_PDEATHSIG), so the app does not outlive it.
#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_the_launcher_stops_the_app() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("app.py"), TRAPS_TERM);
    let marker = dir.path().join("got-term");
    let reserved = ReservedPort::new();
    let app_port = reserved.port();
    let mut run = Launcher::start(
        &[
            "--app-id".into(),
            "orphaned".into(),
            "--app-port".into(),
            app_port.to_string().into(),
            "-H".into(),
            "0".into(),
            "-G".into(),
            "0".into(),
            "python3".into(),
            "app.py".into(),
            marker.clone().into_os_string(),
        ],
        dir.path(),
        &[],
    );
    let ready = run.wait_line("== APP == READY ", LONG);
    let pids: Vec<i32> = ready
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (app, grandchild) = (pids[0], pids[1]);
    // Whatever happens below, the test leaves no process behind.
    let mut reaper = KillOnDrop(vec![app, grandchild]);
    assert!(alive(app));

    run.signal(libc::SIGKILL);
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), None, "killed by a signal");
    wait_for("the app to get SIGTERM", LONG, || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|m| m == "SIGTERM")
    });
    wait_for("the app to exit", LONG, || (!alive(app)).then_some(()));
    // Gone and reaped: its pid may be reused, so it is not killed again.
    reaper.0.retain(|&p| p != app);
    // Its own child is out of reach of the kernel's signal (documented);
    // `reaper` removes it.
}

/// SIGKILLs the given processes when dropped (they may be gone already).
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2) on pids this test started; ESRCH is fine.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn multi_app_exit_code_is_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("ok")).unwrap();
    std::fs::create_dir_all(root.join("fails")).unwrap();
    write(
        &root.join("apps.yaml"),
        r#"version: 1
common:
  env:
    GREETING: hello
apps:
  - appID: ok
    appDirPath: ./ok
    command: ["sh", "-c", 'echo $GREETING from $APP_ID in $(basename "$(/bin/pwd)")']
  - appID: fails
    appDirPath: ./fails
    env:
      GREETING: bye
    command: ["sh", "-c", "echo $GREETING from $APP_ID; exit 5"]
"#,
    );
    let mut run = Launcher::start(&args(&["-f", "apps.yaml"]), &root, &[]);
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(5), "{}", run.output());
    assert_eq!(
        run.count("== APP - ok == hello from ok in ok"),
        1,
        "{}",
        run.output()
    );
    assert_eq!(run.count("== APP - fails == bye from fails"), 1);
    assert_eq!(run.count("App fails exited with code 5"), 1);

    // A template with a mistake is reported, and nothing starts.
    write(
        &root.join("bad.yaml"),
        "version: 1\napps:\n  - appID: x\n    appDirPath: ./nope\n    command: [sh]\n",
    );
    let mut run = Launcher::start(&args(&["-f", "bad.yaml"]), &root, &[]);
    let status = run.wait_exit(LONG);
    assert_eq!(status.code(), Some(64), "{}", run.output());
    assert!(run.output().contains("not a folder"), "{}", run.output());
}
