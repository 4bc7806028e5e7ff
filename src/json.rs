//! Small JSON helpers shared by the HTTP API and the HTTP app channel.

use std::ops::ControlFlow;

use bytes::Bytes;

/// The compact text of a JSON value, as Go's `json.Marshal` would write it:
/// insignificant whitespace removed, everything else (key order, number text,
/// escapes) kept. Zero-copy when `raw` is already compact.
pub fn compact(source: &Bytes, raw: &str) -> Bytes {
    let bytes = raw.as_bytes();
    if !has_insignificant_whitespace(bytes) {
        let within = source.as_ptr_range();
        let range = bytes.as_ptr_range();
        return if within.start <= range.start && range.end <= within.end {
            source.slice_ref(bytes)
        } else {
            Bytes::copy_from_slice(bytes)
        };
    }
    let mut out = Vec::with_capacity(bytes.len());
    walk(bytes, |b, in_string| {
        if in_string || !is_whitespace(b) {
            out.push(b);
        }
        ControlFlow::Continue(())
    });
    Bytes::from(out)
}

/// How deeply arrays and objects nest in a JSON text (0 for a scalar). Does not
/// recurse, so any depth is safe to measure.
pub fn nesting_depth(raw: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    walk(raw, |b, in_string| {
        match b {
            _ if in_string => {}
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        ControlFlow::Continue(())
    });
    max
}

fn has_insignificant_whitespace(bytes: &[u8]) -> bool {
    walk(bytes, |b, in_string| {
        if !in_string && is_whitespace(b) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Visits each byte of a JSON text with whether it belongs to a string literal
/// (quotes included), the one place that tracks strings and escapes. Returns
/// true when `visit` stopped early.
fn walk(bytes: &[u8], mut visit: impl FnMut(u8, bool) -> ControlFlow<()>) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        let part_of_string = if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            true
        } else {
            in_string = b == b'"';
            in_string
        };
        if visit(b, part_of_string).is_break() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        let b = Bytes::copy_from_slice(s.as_bytes());
        let raw = std::str::from_utf8(&b).unwrap();
        let from_source = compact(&b, raw);
        // A text that is not part of `source` is copied, with the same result.
        assert_eq!(compact(&Bytes::new(), s), from_source);
        String::from_utf8(from_source.to_vec()).unwrap()
    }

    #[test]
    fn removes_only_insignificant_whitespace() {
        assert_eq!(c("{ \"orderId\" : 1 }"), "{\"orderId\":1}");
        assert_eq!(c("{\"a\": \"x y\\\" z\"}"), "{\"a\":\"x y\\\" z\"}");
        assert_eq!(c("[1, 2,\n3]"), "[1,2,3]");
        assert_eq!(c("\"hello world\""), "\"hello world\"");
        assert_eq!(c("{\"orderId\":1}"), "{\"orderId\":1}");
    }

    #[test]
    fn measures_nesting_without_recursion() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(
            nesting_depth(b"\"[[[{\""),
            0,
            "brackets in strings do not count"
        );
        assert_eq!(nesting_depth(b"{\"a\":[1,{\"b\":[]}],\"c\":{}}"), 4);
        assert_eq!(
            nesting_depth(b"[\"\\\"[\",[]]"),
            2,
            "an escaped quote does not end the string"
        );
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert_eq!(nesting_depth(deep.as_bytes()), 1_000_000);
    }

    #[test]
    fn compact_input_is_not_copied() {
        let b = Bytes::from_static(b"{\"data\":{\"orderId\":1}}");
        let raw = &std::str::from_utf8(&b).unwrap()[8..21];
        let out = compact(&b, raw);
        assert_eq!(&out[..], b"{\"orderId\":1}");
        assert_eq!(out.as_ptr(), b[8..].as_ptr());
    }
}
