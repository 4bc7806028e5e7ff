//! A short run of the benchmark tool (built with `--features bench`), so that
//! it keeps working: it must name the Apache Kafka broker it ran on, print
//! every table with a non-zero rate in each row, the `## Side by side` table
//! with its fixed columns and rows, daprd's rows or a line saying why daprd
//! was skipped, and a JSON file with the same figures; and a soak must lose
//! nothing. No timing is asserted.

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outrigger-bench"))
        .args(args)
        .output()
        .expect("run outrigger-bench");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "outrigger-bench {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The cells of the table rows whose first cell starts with `label`.
fn rows<'a>(text: &'a str, label: &str) -> Vec<Vec<&'a str>> {
    text.lines()
        .filter(|l| l.starts_with(&format!("| {label}")))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect()
}

/// The numbers in column `column` of the rows starting with `label`.
fn rates(text: &str, label: &str, column: usize) -> Vec<f64> {
    rows(text, label)
        .iter()
        .map(|cells| {
            cells[column]
                .parse()
                .unwrap_or_else(|_| panic!("no number in column {column} of {cells:?}"))
        })
        .collect()
}

#[test]
fn quick_benchmark_prints_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let text = run(&[
        "--quick",
        "--starts",
        "2",
        "--input-messages",
        "500",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    for section in [
        "## Output",
        "## Input",
        "## Footprint",
        "## Side by side",
        "## Targets",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    let broker = text
        .lines()
        .find_map(|l| l.strip_prefix("- broker: Apache Kafka "))
        .unwrap_or_else(|| panic!("no broker line:\n{text}"));
    assert!(
        broker.starts_with(|c: char| c.is_ascii_digit()),
        "broker version: {broker}"
    );
    assert!(text.contains("- date: 20"), "no date:\n{text}");

    let daprd = !text.contains("- daprd: skipped (");
    let mut contenders = vec!["outrigger"];
    if daprd {
        contenders.push("daprd");
    }
    // Two direct producers, with or without daprd: one lingering 1 ms, one
    // sending at once (daprd's reference, and outrigger's when it is faster).
    for direct in ["direct rdkafka linger=1ms |", "direct rdkafka linger=0ms |"] {
        let r = rates(&text, direct, 4);
        assert_eq!(r.len(), 2, "one row per concurrency of {direct}:\n{text}");
        assert!(r.iter().all(|&x| x > 0.0), "{direct} {r:?}");
    }
    for label in contenders
        .iter()
        .flat_map(|c| [format!("{c} gRPC |"), format!("{c} HTTP |")])
    {
        let r = rates(&text, &label, 4);
        assert_eq!(r.len(), 2, "one row per concurrency for {label}:\n{text}");
        assert!(r.iter().all(|&x| x > 0.0), "{label}: {r:?}");
    }
    for c in &contenders {
        // The sidecar's CPU per message (13th cell) is measured on every row.
        for cells in rows(&text, &format!("{c} gRPC |")) {
            let cpu: f64 = cells[12].parse().unwrap_or_else(|_| panic!("{cells:?}"));
            assert!(cpu > 0.0, "{cells:?}");
        }
    }
    let mut readers = vec!["direct rdkafka consumer |".to_string()];
    for c in &contenders {
        readers.push(format!("{c} → grpc app |"));
        readers.push(format!("{c} → http app |"));
    }
    for label in &readers {
        let r = rates(&text, label, 2);
        assert_eq!(r.len(), 1, "{label}:\n{text}");
        assert!(r[0] > 0.0, "{label}: {r:?}");
    }

    assert!(
        text.contains("\n| metric | outrigger | daprd | ratio |\n|---|---|---|---|\n"),
        "side-by-side header:\n{text}"
    );
    let measured_in_quick = [
        "CPU s per 100k output msgs",
        "CPU s per 100k input msgs",
        "RSS idle MB",
        "RSS peak MB",
        "start to ready ms",
        "gRPC c=1 added p99 ms",
        "input to gRPC app msgs/s",
    ];
    // --quick has no concurrency 64: those rows are there, empty.
    for name in measured_in_quick
        .iter()
        .chain(&["gRPC c=64 100 B msgs/s", "HTTP c=64 100 B msgs/s"])
    {
        let r = rows(&text, &format!("{name} |"));
        assert_eq!(r.len(), 1, "side-by-side row {name}:\n{text}");
        let cells = &r[0];
        let measured = measured_in_quick.contains(name);
        for (i, present) in [(2, true), (3, daprd)] {
            if measured && present {
                let v: f64 = cells[i].parse().unwrap_or_else(|_| panic!("{cells:?}"));
                // An added latency may be 0 (the sidecar's percentile was lower).
                assert!(v > 0.0 || (name.contains("added") && v == 0.0), "{cells:?}");
            } else {
                assert_eq!(cells[i], "-", "{cells:?}");
            }
        }
    }

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("the JSON file"))
            .expect("valid JSON");
    let out = doc["output"].as_array().expect("output rows");
    assert_eq!(out.len(), 2 * (2 + 2 * contenders.len()), "{doc}");
    assert!(
        out.iter().all(|r| r["msgs_per_s"].as_f64().unwrap() > 0.0),
        "{doc}"
    );
    // The direct consumer, each contender to a gRPC and an HTTP app, and
    // outrigger's key-ordered mode.
    let input = doc["input"].as_array().unwrap();
    assert_eq!(input.len(), 1 + 2 * contenders.len() + 1, "{doc}");
    assert!(
        input.iter().any(|r| r["contender"] == "outrigger"
            && r["app"].as_str().unwrap().contains("deliveryOrder key")
            && r["msgs_per_s"].as_f64().unwrap() > 0.0),
        "{doc}"
    );
    assert!(
        doc["side_by_side"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["metric"] == "CPU s per 100k output msgs"
                && r["outrigger"].as_f64().unwrap() > 0.0),
        "{doc}"
    );
}

#[test]
fn short_soak_loses_nothing() {
    let text = run(&["--soak", "2000"]);
    assert!(text.contains("**lost: 0**"), "{text}");
    assert!(text.contains("(distinct 2000)"), "{text}");
}
