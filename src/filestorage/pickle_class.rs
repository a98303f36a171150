//! The class of a ZODB data record, read from its first pickle.
//!
//! A data record's pickle is two pickles back to back (see ZODB's
//! `serialize.py`): the class metadata, then the object's state. The first
//! is the class itself (`klass`), or a tuple `(klass, None)` /
//! `(klass, newargs)`; ZODB writes protocol 3 through zodbpickle, where a
//! class is a `GLOBAL` opcode (`c<module>\n<name>\n`). Protocol 4 writers
//! use `STACK_GLOBAL` with the two names pushed as strings before it.
//!
//! In both metadata forms the class is the first global the pickle
//! produces, so this reader runs opcodes only up to that global and knows
//! just enough of them to get there: the protocol and frame headers, the
//! tuple mark, `None`, the string pushes and the memo. Anything else first
//! is reported as unsupported; the state pickle is never looked at. No
//! input makes it panic (see the `pickle_class` fuzz target).

use std::collections::HashMap;
use std::fmt;

/// The module and name of a class, as a pickle names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassName {
    /// `ZODB.blob`.
    pub module: String,
    /// `Blob`.
    pub name: String,
}

impl ClassName {
    /// Is this `ZODB.blob.Blob`, the class whose records have a blob file?
    #[must_use]
    pub fn is_blob(&self) -> bool {
        self.module == "ZODB.blob" && self.name == "Blob"
    }
}

impl fmt::Display for ClassName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// Why no class could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassError {
    /// The bytes end before the class.
    Truncated,
    /// The pickle stops (`.`) without naming a class.
    NoClass,
    /// An opcode this reader does not run came before the class.
    Unsupported(u8),
    /// `STACK_GLOBAL` without two strings on the stack, or a memo lookup
    /// of something never stored.
    Malformed(&'static str),
}

impl fmt::Display for ClassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassError::Truncated => write!(f, "the pickle ends before its class"),
            ClassError::NoClass => write!(f, "the first pickle names no class"),
            ClassError::Unsupported(op) => {
                write!(f, "unexpected pickle opcode 0x{op:02x} before the class")
            }
            ClassError::Malformed(why) => write!(f, "malformed pickle: {why}"),
        }
    }
}

/// A value on the reader's stack: only strings matter (for
/// `STACK_GLOBAL`).
#[derive(Debug, Clone)]
enum Item {
    Text(String),
    Other,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClassError> {
        let end = self.pos.checked_add(n).ok_or(ClassError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(ClassError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, ClassError> {
        Ok(self.take(1)?[0])
    }

    fn line(&mut self) -> Result<&'a [u8], ClassError> {
        let rest = self.data.get(self.pos..).ok_or(ClassError::Truncated)?;
        let n = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(ClassError::Truncated)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn len_le(&mut self, width: usize) -> Result<usize, ClassError> {
        let b = self.take(width)?;
        let n = b
            .iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        usize::try_from(n).map_err(|_| ClassError::Truncated)
    }
}

fn text(b: &[u8]) -> Item {
    Item::Text(String::from_utf8_lossy(b).into_owned())
}

fn decimal(b: &[u8]) -> Result<u64, ClassError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(ClassError::Malformed("bad memo index"))
}

/// The class a data record's pickle names: the first global of its first
/// pickle.
///
/// # Errors
/// [`ClassError`] when the bytes end, stop or hold an opcode this reader
/// does not run before a class is named.
pub fn record_class(pickle: &[u8]) -> Result<ClassName, ClassError> {
    let mut r = Reader {
        data: pickle,
        pos: 0,
    };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<u64, Item> = HashMap::new();
    loop {
        let op = r.byte()?;
        match op {
            // PROTO
            0x80 => {
                r.take(1)?;
            }
            // FRAME (protocol 4): an 8-byte length, then the frame's opcodes.
            0x95 => {
                r.take(8)?;
            }
            // GLOBAL
            b'c' => {
                let module = String::from_utf8_lossy(r.line()?).into_owned();
                let name = String::from_utf8_lossy(r.line()?).into_owned();
                return Ok(ClassName { module, name });
            }
            // STACK_GLOBAL
            0x93 => {
                let name = stack.pop();
                let module = stack.pop();
                return match (module, name) {
                    (Some(Item::Text(module)), Some(Item::Text(name))) => {
                        Ok(ClassName { module, name })
                    }
                    _ => Err(ClassError::Malformed("STACK_GLOBAL without two strings")),
                };
            }
            // SHORT_BINUNICODE, SHORT_BINSTRING
            0x8c | b'U' => {
                let n = usize::from(r.byte()?);
                stack.push(text(r.take(n)?));
            }
            // BINUNICODE, BINSTRING
            b'X' | b'T' => {
                let n = r.len_le(4)?;
                stack.push(text(r.take(n)?));
            }
            // BINUNICODE8
            0x8d => {
                let n = r.len_le(8)?;
                stack.push(text(r.take(n)?));
            }
            // UNICODE (raw-unicode-escape; class names are ASCII)
            b'V' => stack.push(text(r.line()?)),
            // MARK, EMPTY_TUPLE, NONE
            b'(' | b')' | b'N' => stack.push(Item::Other),
            // MEMOIZE
            0x94 => {
                let top = stack.last().cloned().unwrap_or(Item::Other);
                memo.insert(memo.len() as u64, top);
            }
            // BINPUT, LONG_BINPUT, PUT
            b'q' | b'r' | b'p' => {
                let idx = match op {
                    b'q' => u64::from(r.byte()?),
                    b'r' => r.len_le(4)? as u64,
                    _ => decimal(r.line()?)?,
                };
                let top = stack.last().cloned().unwrap_or(Item::Other);
                memo.insert(idx, top);
            }
            // BINGET, LONG_BINGET, GET
            b'h' | b'j' | b'g' => {
                let idx = match op {
                    b'h' => u64::from(r.byte()?),
                    b'j' => r.len_le(4)? as u64,
                    _ => decimal(r.line()?)?,
                };
                let item = memo
                    .get(&idx)
                    .cloned()
                    .ok_or(ClassError::Malformed("memo lookup of nothing stored"))?;
                stack.push(item);
            }
            // STOP
            b'.' => return Err(ClassError::NoClass),
            other => return Err(ClassError::Unsupported(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(p: &[u8]) -> Result<String, ClassError> {
        record_class(p).map(|c| c.to_string())
    }

    #[test]
    fn record_class_global() {
        // What zodbpickle writes for a class without __getnewargs__.
        let p = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03}q\x01.";
        assert_eq!(class(p).as_deref(), Ok("ZODB.blob.Blob"));
        assert!(record_class(p).is_ok_and(|c| c.is_blob()));
    }

    #[test]
    fn record_class_tuple_forms() {
        // (klass, None) and (klass, ()) as protocol 3, and a MARK tuple.
        let none = b"\x80\x03cZODB.blob\nBlob\nq\x00N\x86q\x01.";
        let args = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00)\x86q\x01.";
        let marked = b"(cZODB.blob\nBlob\nq\x01Ntq\x02.";
        assert_eq!(class(none).as_deref(), Ok("ZODB.blob.Blob"));
        assert_eq!(
            class(args).as_deref(),
            Ok("persistent.mapping.PersistentMapping")
        );
        assert_eq!(class(marked).as_deref(), Ok("ZODB.blob.Blob"));
    }

    #[test]
    fn record_class_stack_global() {
        // Protocol 4 as Python writes it, with a frame and memoized names.
        let p = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00\x8c\tZODB.blob\x94\x8c\x04Blob\x94\x93\x94.";
        assert_eq!(class(p).as_deref(), Ok("ZODB.blob.Blob"));
        // The names fetched back from the memo.
        let p = b"\x80\x04\x8c\tZODB.blob\x94\x8c\x04Blob\x94h\x00h\x01\x93.";
        assert_eq!(class(p).as_deref(), Ok("ZODB.blob.Blob"));
        // BINUNICODE with a 4-byte length.
        let p = b"X\x09\x00\x00\x00ZODB.blobX\x04\x00\x00\x00Blob\x93.";
        assert_eq!(class(p).as_deref(), Ok("ZODB.blob.Blob"));
    }

    #[test]
    fn record_class_refusals() {
        assert_eq!(record_class(b""), Err(ClassError::Truncated));
        assert_eq!(
            record_class(b"\x80\x03cZODB.blob\nBl"),
            Err(ClassError::Truncated)
        );
        assert_eq!(record_class(b"\x80\x03N."), Err(ClassError::NoClass));
        assert_eq!(
            record_class(b"\x80\x03K\x01."),
            Err(ClassError::Unsupported(b'K'))
        );
        assert!(matches!(
            record_class(b"\x80\x04N\x8c\x01x\x93."),
            Err(ClassError::Malformed(_))
        ));
        assert!(matches!(
            record_class(b"h\x05"),
            Err(ClassError::Malformed(_))
        ));
        assert_eq!(
            record_class(b"X\xff\xff\xff\xff"),
            Err(ClassError::Truncated)
        );
        assert_eq!(
            record_class(b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff"),
            Err(ClassError::Truncated)
        );
    }
}
