//! The argument pre-pass of `outrigger run`, for `dapr run` compatibility.
//!
//! `dapr run` takes its own flags anywhere before a `--`, even after the app
//! command (`outrigger run --app-id x node app.js --components-path ../c`), and
//! passes everything else to the app. clap alone cannot split argv that way, so
//! the pre-pass walks argv with the list of known flags (taken from clap's own
//! definition, so that it never drifts) and rewrites it as
//! `run <launcher flags> -- <app command ...>`, which clap then parses.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command, SidecarArgs};

/// The flags `outrigger run` knows: name (long, without `--`, or short) → takes a value.
#[derive(Debug, Default)]
struct KnownFlags {
    long: HashMap<String, bool>,
    short: HashMap<char, bool>,
}

impl KnownFlags {
    /// Read from clap's definition of the `run` subcommand (flags, aliases, `--help`).
    fn of_run() -> KnownFlags {
        let mut cli = Cli::command();
        cli.build();
        let mut known = KnownFlags::default();
        let Some(run) = cli.find_subcommand("run") else {
            return known;
        };
        for arg in run.get_arguments().filter(|a| !a.is_positional()) {
            // A flag whose value is optional (`--enable-metrics`, `=false` to
            // turn it off) never takes the next token, as Go's bool flags.
            let takes_value = arg.get_action().takes_values()
                && arg.get_num_args().is_none_or(|n| n.min_values() > 0);
            for long in arg
                .get_long()
                .into_iter()
                .chain(arg.get_all_aliases().unwrap_or_default())
            {
                known.long.insert(long.to_string(), takes_value);
            }
            for short in arg
                .get_short()
                .into_iter()
                .chain(arg.get_all_short_aliases().unwrap_or_default())
            {
                known.short.insert(short, takes_value);
            }
        }
        known
    }

    /// The shape of `token` when it is a known flag; `None` otherwise (and for non-flags).
    fn classify(&self, token: &str) -> Option<FlagShape> {
        if let Some(long) = token.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            let takes_value = *self.long.get(name)?;
            return Some(FlagShape {
                needs_next: takes_value && !inline,
            });
        }
        let rest = token.strip_prefix('-')?;
        let mut chars = rest.chars();
        let first = chars.next()?;
        let takes_value = *self.short.get(&first)?;
        if takes_value {
            // `-p 3000`, or the value attached: `-p3000`, `-p=3000`.
            return Some(FlagShape {
                needs_next: chars.as_str().is_empty(),
            });
        }
        // A cluster of switches (`-xy`) only when every letter is a known switch.
        chars
            .all(|c| self.short.get(&c) == Some(&false))
            .then_some(FlagShape { needs_next: false })
    }
}

#[derive(Debug, Clone, Copy)]
struct FlagShape {
    /// The value is the next token.
    needs_next: bool,
}

/// The arguments of `outrigger run`, split.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Known flags with their values, in order.
    pub launcher: Vec<OsString>,
    /// The app command and its arguments.
    pub app: Vec<OsString>,
    /// The first unknown flag found before the app command (an error: an app
    /// command cannot start with `-`; the flag is most likely mistyped).
    pub unknown: Option<OsString>,
}

/// Splits the arguments of `outrigger run` into launcher flags and app command.
///
/// Known flags (with their values) go to the launcher wherever they appear before
/// a `--`; the first other token starts the app command, and every unknown token
/// after it belongs to the app; everything after the first `--` goes to the app
/// untouched.
pub fn split_run_args(args: &[OsString]) -> Split {
    let known = KnownFlags::of_run();
    let mut split = Split::default();
    let mut tokens = args.iter();
    while let Some(token) = tokens.next() {
        if token == "--" {
            split.app.extend(tokens.by_ref().cloned());
            break;
        }
        // Non-UTF-8 tokens cannot be flags: they are app arguments.
        let Some(text) = token.to_str() else {
            split.app.push(token.clone());
            continue;
        };
        match known.classify(text) {
            Some(shape) => {
                split.launcher.push(token.clone());
                if shape.needs_next
                    && let Some(value) = tokens.next()
                {
                    split.launcher.push(value.clone());
                }
            }
            None if split.app.is_empty() && text.starts_with('-') && text != "-" => {
                split.unknown.get_or_insert_with(|| token.clone());
            }
            None => split.app.push(token.clone()),
        }
    }
    split
}

/// Rewrites `outrigger run ...` argv as `outrigger run <launcher flags> -- <app ...>`;
/// any other argv is returned unchanged. Err: an unknown flag before the app command.
pub fn prepare(argv: Vec<OsString>) -> Result<Vec<OsString>, OsString> {
    if argv.get(1).map(OsString::as_os_str) != Some(OsStr::new("run")) {
        return Ok(argv);
    }
    let split = split_run_args(&argv[2..]);
    if let Some(flag) = split.unknown {
        return Err(flag);
    }
    let mut out: Vec<OsString> = argv[..2].to_vec();
    out.extend(split.launcher);
    if !split.app.is_empty() {
        out.push("--".into());
        out.extend(split.app);
    }
    Ok(out)
}

/// Parses the whole command line (exits with clap's message on bad flags).
///
/// For `run`, the sidecar ports that were not given become 0, so that the
/// sidecar picks free ports, as `dapr run` does.
pub fn parse_cli(argv: impl IntoIterator<Item = OsString>) -> Cli {
    match try_parse_cli(argv) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// `outrigger sidecar ...` parsed with the sidecar's flags alone: building
/// clap's definition of every subcommand (`run` repeats all the sidecar's
/// flags) was a tenth of the time to ready. `None` on any error, `--help`
/// included, so that the full parse gives the message it always gave.
fn parse_sidecar_only(argv: &[OsString]) -> Option<SidecarArgs> {
    if argv.get(1).map(OsString::as_os_str) != Some(OsStr::new("sidecar")) {
        return None;
    }
    // argv[1], "sidecar", stands where clap expects the binary's name.
    let matches = SidecarArgs::augment_args(clap::Command::new("sidecar"))
        .try_get_matches_from(&argv[1..])
        .ok()?;
    SidecarArgs::from_arg_matches(&matches).ok()
}

/// [`parse_cli`] without exiting.
pub fn try_parse_cli(argv: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    if let Some(args) = parse_sidecar_only(&argv) {
        return Ok(Cli {
            command: Command::Sidecar(args),
        });
    }
    parse_full(argv)
}

/// Every subcommand's definition built, for all that the sidecar-only parse
/// does not take.
fn parse_full(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let argv = prepare(argv).map_err(|flag| {
        command.build();
        let run = command.find_subcommand("run").cloned();
        let mut err = clap::Error::raw(
            ErrorKind::UnknownArgument,
            format!(
                "unexpected argument '{}' before the app command \
                 (to pass it to the app, put the app command after `--`)",
                flag.to_string_lossy()
            ),
        );
        if let Some(mut run) = run {
            err = err.format(&mut run);
        }
        err
    })?;
    let matches = command.try_get_matches_from_mut(argv)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    if let (Command::Run(args), Some(run)) = (&mut cli.command, matches.subcommand_matches("run")) {
        let given = |id: &str| run.value_source(id) == Some(ValueSource::CommandLine);
        if !given("dapr_http_port") {
            args.sidecar.dapr_http_port = 0;
        }
        if !given("metrics_port") {
            args.sidecar.metrics_port = 0;
        }
        if !given("dapr_grpc_port") {
            args.sidecar.dapr_grpc_port = 0;
        }
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_only_parse_gives_what_the_full_parse_gives() {
        let cases: &[&[&str]] = &[
            &[],
            &[
                "--app-id",
                "a",
                "--app-port",
                "3000",
                "--app-protocol",
                "grpc",
            ],
            &[
                "--dapr-grpc-port=0",
                "--dapr-http-port",
                "0",
                "--resources-path",
                "c",
            ],
            &[
                "--enable-metrics=false",
                "--log-level",
                "debug",
                "--app-max-concurrency",
                "8",
            ],
            &[
                "--components-path",
                "x",
                "--dapr-graceful-shutdown-seconds",
                "2",
            ],
            &[
                "--mode",
                "kubernetes",
                "--namespace",
                "n",
                "--dapr-public-port",
                "3501",
            ],
        ];
        for case in cases {
            let argv: Vec<OsString> = ["outrigger", "sidecar"]
                .iter()
                .chain(case.iter())
                .map(OsString::from)
                .collect();
            let fast = parse_sidecar_only(&argv).unwrap_or_else(|| panic!("{case:?}: not taken"));
            let full = match parse_full(argv).unwrap().command {
                Command::Sidecar(args) => args,
                other => panic!("not sidecar: {other:?}"),
            };
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{case:?}");
        }
        // Errors and help fall through to the full parse, for its messages.
        for bad in [&["--no-such-flag"][..], &["--help"], &["--app-port", "x"]] {
            let argv: Vec<OsString> = ["outrigger", "sidecar"]
                .iter()
                .chain(bad.iter())
                .map(OsString::from)
                .collect();
            assert!(parse_sidecar_only(&argv).is_none(), "{bad:?}");
            assert!(try_parse_cli(argv).is_err(), "{bad:?}");
        }
    }

    fn split(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let split = split_run_args(&args);
        assert_eq!(split.unknown, None);
        let s = |v: Vec<OsString>| v.into_iter().map(|s| s.into_string().unwrap()).collect();
        (s(split.launcher), s(split.app))
    }

    fn run_args(args: &[&str]) -> crate::cli::RunArgs {
        let argv = ["outrigger", "run"].iter().chain(args).map(OsString::from);
        match try_parse_cli(argv).unwrap().command {
            Command::Run(r) => r,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn a_flag_with_an_optional_value_does_not_take_the_next_flag() {
        let (l, a) = split(&[
            "--enable-metrics",
            "--metrics-port",
            "0",
            "--enable-metrics=false",
            "sh",
        ]);
        assert_eq!(
            l,
            [
                "--enable-metrics",
                "--metrics-port",
                "0",
                "--enable-metrics=false"
            ]
        );
        assert_eq!(a, ["sh"]);
        let r = run_args(&["--enable-metrics", "--metrics-port", "0", "--", "sh"]);
        assert_eq!(r.sidecar.metrics_port, 0);
        assert!(r.sidecar.enable_metrics);
    }

    #[test]
    fn tutorial_shape_flags_after_the_command() {
        let (l, a) = split(&[
            "--app-id",
            "bindings-nodeapp",
            "--app-port",
            "3000",
            "node",
            "app.js",
            "--components-path",
            "../components",
        ]);
        assert_eq!(
            l,
            [
                "--app-id",
                "bindings-nodeapp",
                "--app-port",
                "3000",
                "--components-path",
                "../components"
            ]
        );
        assert_eq!(a, ["node", "app.js"]);
    }

    #[test]
    fn short_forms_inline_values_and_unknown_app_flags() {
        let (l, a) = split(&[
            "-a",
            "x",
            "-p3000",
            "--dapr-http-port=0",
            "python3",
            "-u",
            "s.py",
            "--verbose",
            "-d",
            "c",
            "-n",
            "5",
        ]);
        assert_eq!(l, ["-a", "x", "-p3000", "--dapr-http-port=0", "-d", "c"]);
        assert_eq!(a, ["python3", "-u", "s.py", "--verbose", "-n", "5"]);
    }

    #[test]
    fn everything_after_double_dash_goes_to_the_app() {
        let (l, a) = split(&["-a", "x", "--", "sh", "-c", "echo", "--app-id", "y", "--"]);
        assert_eq!(l, ["-a", "x"]);
        assert_eq!(a, ["sh", "-c", "echo", "--app-id", "y", "--"]);
        let (l, a) = split(&["sh", "s.sh", "--", "--app-port", "1"]);
        assert!(l.is_empty());
        assert_eq!(a, ["sh", "s.sh", "--app-port", "1"]);
    }

    #[test]
    fn switches_and_negative_values() {
        let (l, a) = split(&["--log-as-json", "--app-max-concurrency", "-1", "app", "-1"]);
        assert_eq!(l, ["--log-as-json", "--app-max-concurrency", "-1"]);
        assert_eq!(a, ["app", "-1"]);
    }

    #[test]
    fn unknown_flag_before_the_command_is_an_error() {
        let argv = ["outrigger", "run", "--no-such-flag", "node", "app.js"].map(OsString::from);
        let err = try_parse_cli(argv).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }

    #[test]
    fn parsed_run_args_and_free_ports() {
        let r = run_args(&[
            "--app-id",
            "n",
            "node",
            "app.js",
            "--components-path",
            "../c",
        ]);
        assert_eq!(r.sidecar.app_id, "n");
        assert_eq!(r.command, ["node", "app.js"]);
        assert_eq!(r.sidecar.resources_path, [std::path::PathBuf::from("../c")]);
        assert_eq!((r.sidecar.dapr_http_port, r.sidecar.dapr_grpc_port), (0, 0));
        let r = run_args(&["-H", "3500", "--dapr-grpc-port", "50001", "-f", "t.yaml"]);
        assert_eq!(
            (r.sidecar.dapr_http_port, r.sidecar.dapr_grpc_port),
            (3500, 50001)
        );
        assert_eq!(r.run_file, Some("t.yaml".into()));
        assert!(r.command.is_empty());
    }

    #[test]
    fn other_subcommands_are_untouched() {
        let argv: Vec<OsString> = ["outrigger", "sidecar", "--app-id", "x"]
            .map(OsString::from)
            .into();
        assert_eq!(prepare(argv.clone()), Ok(argv));
    }
}
