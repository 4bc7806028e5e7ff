//! A short run of the benchmark tool (built with `--features bench`), so that
//! it keeps working: it must print every table, with a non-zero rate in each
//! row, and a soak with nothing lost. No timing is asserted.

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

/// The msgs/s column (the 4th or 2nd cell) of the table row starting with `label`.
fn rates(text: &str, label: &str, column: usize) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("| {label}")))
        .map(|l| {
            l.split('|')
                .nth(column)
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or_else(|| panic!("no rate in {l:?}"))
        })
        .collect()
}

#[test]
fn quick_benchmark_prints_every_table() {
    let text = run(&["--quick", "--starts", "2", "--input-messages", "500"]);
    for section in ["## Output", "## Input", "## Footprint", "## Targets"] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    for label in ["direct rdkafka |", "outrigger gRPC", "outrigger HTTP"] {
        let r = rates(&text, label, 4);
        assert_eq!(r.len(), 2, "one row per concurrency for {label}:\n{text}");
        assert!(r.iter().all(|&x| x > 0.0), "{label}: {r:?}");
    }
    for label in [
        "direct rdkafka consumer",
        "outrigger → grpc app",
        "outrigger → http app",
    ] {
        let r = rates(&text, label, 2);
        assert_eq!(r.len(), 1, "{label}:\n{text}");
        assert!(r[0] > 0.0, "{label}: {r:?}");
    }
}

#[test]
fn short_soak_loses_nothing() {
    let text = run(&["--soak", "2000"]);
    assert!(text.contains("**lost: 0**"), "{text}");
    assert!(text.contains("(distinct 2000)"), "{text}");
}
