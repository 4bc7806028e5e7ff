//! Where each key of a YAML document is written, from one pass over the events
//! of libyaml (the parser serde_yaml is built on), so that an error can name
//! the exact line of any field, block or flow style alike, at a cost linear in
//! the document. serde_yaml's `Value` keeps no positions, hence this second,
//! event-level read of the same text with the same parser.

use std::collections::HashMap;
use std::mem::MaybeUninit;

#[allow(clippy::unsafe_removed_from_name)] // the short name reads better at every call site
use unsafe_libyaml as libyaml;

/// Keys nested deeper than this are not recorded (`spec.metadata[3].name` is 4).
const MAX_RECORDED_DEPTH: usize = 4;

/// Collections nested deeper than this end the read: serde_yaml refuses such a
/// document anyway (its limit is 128), and libyaml slows down with depth.
const MAX_NESTING: usize = 256;

/// Scalar values recorded (for naming a component whose document is invalid):
/// only at this depth or less (`metadata.name`, `spec.type`).
const MAX_VALUE_DEPTH: usize = 2;

/// Lines (1-based, counted from the start of the text given) of the keys of a
/// document, by path: `spec`, `spec.type`, `spec.metadata[2]` (where the item
/// starts), `spec.metadata[2].name`.
#[derive(Debug, Default)]
pub struct KeyLines {
    lines: HashMap<String, usize>,
    values: HashMap<String, String>,
    /// Where the document's root node starts.
    pub root: Option<usize>,
    /// Whether libyaml read the whole text without an error.
    pub complete: bool,
}

impl KeyLines {
    pub fn line(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// A scalar written at a shallow `path` (e.g. `metadata.name`).
    pub fn value(&self, path: &str) -> Option<&str> {
        self.values.get(path).map(String::as_str)
    }
}

enum Frame {
    Map {
        path: String,
        depth: usize,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
    },
    Seq {
        path: String,
        depth: usize,
        index: usize,
    },
}

impl Frame {
    /// The path and depth of the node that comes next in this collection, or
    /// `None` when that node is a mapping key.
    fn child(&self) -> Option<(String, usize)> {
        match self {
            Frame::Map { key: None, .. } => None,
            Frame::Map {
                path,
                depth,
                key: Some(k),
            } => Some((join(path, k), depth + 1)),
            Frame::Seq { path, depth, index } => Some((format!("{path}[{index}]"), depth + 1)),
        }
    }

    /// A node of this collection has been read.
    fn advance(&mut self) {
        match self {
            Frame::Map { key, .. } => *key = None,
            Frame::Seq { index, .. } => *index += 1,
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads the events of one YAML document and records where its keys are.
/// Stops at the first error, keeping what was read up to it.
pub fn key_lines(text: &str) -> KeyLines {
    let mut out = KeyLines::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new(text.as_bytes());
    // Set when a mapping key is itself a collection: its contents are skipped.
    let mut complex_key_depth = 0usize;
    // A scalar value is kept once the event after it parses: in `name: a: b`,
    // libyaml hands out `a` before it finds the error.
    let mut pending: Option<(String, String)> = None;
    loop {
        let Some(event) = parser.next() else {
            return out;
        };
        if let Some((path, value)) = pending.take() {
            out.values.entry(path).or_insert(value);
        }
        let line = event.line + 1;
        if complex_key_depth > 0 {
            match event.kind {
                Kind::CollectionStart => complex_key_depth += 1,
                Kind::CollectionEnd => {
                    complex_key_depth -= 1;
                    if complex_key_depth == 0
                        && let Some(Frame::Map { key, .. }) = stack.last_mut()
                    {
                        // Not a name anyone can look up.
                        *key = Some("?".into());
                    }
                }
                _ => {}
            }
            continue;
        }
        match event.kind {
            Kind::StreamEnd => {
                out.complete = true;
                return out;
            }
            Kind::Other => {}
            Kind::Scalar(value) => match stack.last_mut() {
                None => out.root = out.root.or(Some(line)),
                Some(Frame::Map {
                    path, depth, key, ..
                }) if key.is_none() => {
                    let value = value.unwrap_or_default();
                    if *depth < MAX_RECORDED_DEPTH {
                        out.lines.entry(join(path, &value)).or_insert(line);
                    }
                    *key = Some(value);
                }
                Some(frame) => {
                    if let Some((path, depth)) = frame.child() {
                        // A scalar item of a list has a line too (`spec.metadata[2]`).
                        if matches!(frame, Frame::Seq { .. }) && depth <= MAX_RECORDED_DEPTH {
                            out.lines.entry(path.clone()).or_insert(line);
                        }
                        if let Some(value) = value.filter(|_| depth <= MAX_VALUE_DEPTH) {
                            pending = Some((path, value));
                        }
                    }
                    frame.advance();
                }
            },
            Kind::CollectionStart => {
                let is_map = event.is_map;
                let (path, depth) = match stack.last() {
                    None => {
                        out.root = out.root.or(Some(line));
                        (String::new(), 0)
                    }
                    Some(frame) => match frame.child() {
                        Some(child) => child,
                        None => {
                            complex_key_depth = 1;
                            continue;
                        }
                    },
                };
                if matches!(stack.last(), Some(Frame::Seq { .. })) && depth <= MAX_RECORDED_DEPTH {
                    out.lines.entry(path.clone()).or_insert(line);
                }
                if stack.len() >= MAX_NESTING {
                    return out;
                }
                stack.push(if is_map {
                    Frame::Map {
                        path,
                        depth,
                        key: None,
                    }
                } else {
                    Frame::Seq {
                        path,
                        depth,
                        index: 0,
                    }
                });
            }
            Kind::CollectionEnd => {
                stack.pop();
                if let Some(parent) = stack.last_mut() {
                    parent.advance();
                }
            }
        }
    }
}

enum Kind {
    StreamEnd,
    /// A scalar, or an alias (`None`).
    Scalar(Option<String>),
    CollectionStart,
    CollectionEnd,
    Other,
}

struct Event {
    kind: Kind,
    is_map: bool,
    /// 0-based line where the event starts.
    line: usize,
}

/// libyaml's parser over a borrowed text. The parser state lives in a box so
/// that it never moves once initialised; the text outlives the parser.
struct Parser<'a> {
    state: Box<MaybeUninit<libyaml::yaml_parser_t>>,
    initialised: bool,
    done: bool,
    _text: &'a [u8],
}

impl<'a> Parser<'a> {
    fn new(text: &'a [u8]) -> Self {
        let mut state = Box::new(MaybeUninit::<libyaml::yaml_parser_t>::uninit());
        // SAFETY: initialize fills the struct (it fails only when libyaml cannot
        // allocate); the input pointer stays valid for 'a, which outlives the
        // parser (held in `_text`).
        let initialised = unsafe {
            let p = state.as_mut_ptr();
            let ok = !libyaml::yaml_parser_initialize(p).fail;
            if ok {
                libyaml::yaml_parser_set_encoding(p, libyaml::YAML_UTF8_ENCODING);
                libyaml::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
            }
            ok
        };
        Parser {
            state,
            initialised,
            done: !initialised,
            _text: text,
        }
    }

    /// The next event, or `None` after the end of the stream or an error.
    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let mut event = MaybeUninit::<libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new` and not yet deleted; the
        // event is read only after parse succeeded and deleted right after.
        unsafe {
            let p = self.state.as_mut_ptr();
            if libyaml::yaml_parser_parse(p, event.as_mut_ptr()).fail {
                self.done = true;
                return None;
            }
            let e = event.as_mut_ptr();
            let line = (*e).start_mark.line as usize;
            let (kind, is_map) = match (*e).type_ {
                libyaml::YAML_STREAM_END_EVENT => {
                    self.done = true;
                    (Kind::StreamEnd, false)
                }
                libyaml::YAML_SCALAR_EVENT => {
                    let s = (*e).data.scalar;
                    let bytes = if s.value.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(s.value, s.length as usize)
                    };
                    (
                        Kind::Scalar(Some(String::from_utf8_lossy(bytes).into_owned())),
                        false,
                    )
                }
                libyaml::YAML_ALIAS_EVENT => (Kind::Scalar(None), false),
                libyaml::YAML_SEQUENCE_START_EVENT => (Kind::CollectionStart, false),
                libyaml::YAML_MAPPING_START_EVENT => (Kind::CollectionStart, true),
                libyaml::YAML_SEQUENCE_END_EVENT | libyaml::YAML_MAPPING_END_EVENT => {
                    (Kind::CollectionEnd, false)
                }
                _ => (Kind::Other, false),
            };
            libyaml::yaml_event_delete(e);
            Some(Event { kind, is_map, line })
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        if self.initialised {
            // SAFETY: initialised in `new`, deleted once, here.
            unsafe { libyaml::yaml_parser_delete(self.state.as_mut_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_block_and_flow_keys_with_their_lines() {
        let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: bindings.kafka\n  metadata:\n    - name: brokers\n      value: x\n    - {name: topics, value: y}\n    -\n      name: consumerGroup\n      value: g\n";
        let k = key_lines(text);
        assert!(k.complete);
        assert_eq!(k.root, Some(1));
        assert_eq!(k.line("apiVersion"), Some(1));
        assert_eq!(k.line("metadata.name"), Some(4));
        assert_eq!(k.value("metadata.name"), Some("orders"));
        assert_eq!(k.value("spec.type"), Some("bindings.kafka"));
        assert_eq!(k.line("spec.type"), Some(6));
        assert_eq!(k.line("spec.metadata"), Some(7));
        assert_eq!(k.line("spec.metadata[0]"), Some(8));
        assert_eq!(k.line("spec.metadata[0].name"), Some(8));
        assert_eq!(k.line("spec.metadata[1].name"), Some(10));
        assert_eq!(k.line("spec.metadata[2]"), Some(12));
        assert_eq!(k.line("spec.metadata[2].name"), Some(12));
        assert_eq!(k.line("spec.metadata[0].value"), Some(9));
        let k = key_lines("scopes:\n- a\n- b\n");
        assert_eq!(k.line("scopes[1]"), Some(3));
    }

    #[test]
    fn keeps_what_it_read_before_an_error() {
        let k = key_lines(
            "metadata:\n  name: \"orders\"\nspec:\n  type: bindings.kafka\n  metadata: [oops\n",
        );
        assert!(!k.complete);
        assert_eq!(k.value("metadata.name"), Some("orders"));
        assert_eq!(k.value("spec.type"), Some("bindings.kafka"));
    }

    #[test]
    fn skips_complex_keys_and_aliases() {
        let text = "? [a, b]\n: 1\nx: &A {y: 2}\nz: *A\nw: 3\n";
        let k = key_lines(text);
        assert!(k.complete);
        assert_eq!(k.line("x.y"), Some(3));
        assert_eq!(k.line("z"), Some(4));
        assert_eq!(k.line("w"), Some(5));
    }

    #[test]
    fn records_every_item_of_a_long_list() {
        let mut text = String::from("spec:\n  metadata:\n");
        for i in 0..20_000 {
            text.push_str(&format!("    - name: k{i}\n      value: v\n"));
        }
        let k = key_lines(&text);
        assert_eq!(k.line("spec.metadata[19999].name"), Some(3 + 2 * 19_999));
    }
}
