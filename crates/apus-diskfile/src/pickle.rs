//! A small, safe subset of Python's pickle format: enough to read what
//! Swift writes on disk (object metadata, `hashes.pkl`, async pendings) and
//! to write pickles Swift reads back.
//!
//! Reading understands protocols 0 to 5 for plain data: `None`, booleans,
//! integers, floats, `str`, `bytes` (including Python 3's protocol-2 form
//! `_codecs.encode(<latin-1 text>, 'latin1')` and `bytes()` for the empty
//! value), lists, tuples, dicts and sets, plus dict subclasses such as
//! Swift's `HeaderKeyDict`. No other global is ever resolved: an unknown
//! callable is an error, never code execution.
//!
//! Memo semantics are by value: a memoized container that is filled after
//! it was memoized and then fetched again would come back empty. Python
//! only emits such back-references for shared or recursive containers,
//! which none of Swift's on-disk pickles contain.
//!
//! Only memo entries that the pickle fetches again are stored: Python's
//! pickler memoizes nearly everything and fetches almost nothing, and a
//! copy per memoized level of a deeply nested value would cost quadratic
//! time. A first pass over the opcodes finds the keys fetched.
//!
//! Because copies stand in for Python's shared references, all the copies
//! one pickle makes may weigh only a bounded multiple of its size
//! ([`PickleError::TooLarge`]), and values nest at most [`MAX_DEPTH`] deep
//! ([`PickleError::TooDeep`]): no pickle makes the decoder run away with
//! memory, time or the stack.
//!
//! Writing produces protocol 2 laid out as Python 3's pickler lays it out
//! (`bytes` as `_codecs.encode` reductions with the global and the
//! `'latin1'` string memoized), which matters because Swift tells Python 3
//! metadata from Python 2 metadata by looking for `_codecs\nencode` in the
//! first 32 bytes. The bytes written are the bytes Python writes.

use std::collections::{HashMap, HashSet};

/// A pickled value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Key/value pairs in insertion order, keys unique.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A reference to a class or function (`module.name`), as found in the
    /// arguments of a reduction; never resolved.
    Global(String, String),
}

impl Value {
    /// Inserts or replaces `key` in a dict value (no-op on other values).
    pub fn dict_set(&mut self, key: Value, value: Value) {
        if let Value::Dict(items) = self {
            dict_insert(items, key, value);
        }
    }

    /// The value under a `str` key of a dict.
    pub fn dict_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Str(s) if s == key => Some(v),
                Value::Bytes(b) if b == key.as_bytes() => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

fn dict_insert(items: &mut Vec<(Value, Value)>, key: Value, value: Value) {
    if let Some(slot) = items.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        items.push((key, value));
    }
}

/// Pairs with their count known up front (for `dict_insert_all`'s choice).
struct ExactPairs<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator<Item = (Value, Value)>> Iterator for ExactPairs<I> {
    type Item = (Value, Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.saturating_sub(1);
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Dicts up to this size are searched; larger ones get an index while a
/// batch is inserted.
const LINEAR_DICT: usize = 16;

/// Inserts or replaces each `(key, value)` of `pairs` in order, as
/// [`dict_insert`] one by one would, without its quadratic time on large
/// dicts: a `hashes.pkl` holds up to 4,096 suffixes, and the replicator
/// reads one per partition per pass.
fn dict_insert_all(items: &mut Vec<(Value, Value)>, pairs: impl Iterator<Item = (Value, Value)>) {
    let (low, _) = pairs.size_hint();
    if items.len() + low <= LINEAR_DICT {
        for (k, v) in pairs {
            dict_insert(items, k, v);
        }
        return;
    }
    // Keys by hash; equal keys hash alike (see `hash_value`), and equality
    // is still `Value`'s own.
    let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(items.len() + low);
    for (i, (k, _)) in items.iter().enumerate() {
        index.entry(key_hash(k)).or_default().push(i);
    }
    for (k, v) in pairs {
        let slots = index.entry(key_hash(&k)).or_default();
        match slots.iter().find(|&&i| items[i].0 == k) {
            Some(&i) => items[i].1 = v,
            None => {
                slots.push(items.len());
                items.push((k, v));
            }
        }
    }
}

fn key_hash(v: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_value(v, &mut h);
    h.finish()
}

/// Hashes `v` consistently with `Value`'s `PartialEq`: values that compare
/// equal hash alike (`0.0` and `-0.0` included; a NaN equals nothing, so
/// its hash does not matter).
fn hash_value(v: &Value, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    std::mem::discriminant(v).hash(h);
    match v {
        Value::None => {}
        Value::Bool(b) => b.hash(h),
        Value::Int(i) => i.hash(h),
        Value::Float(f) => (if *f == 0.0 { 0 } else { f.to_bits() }).hash(h),
        Value::Bytes(b) => b.hash(h),
        Value::Str(s) => s.hash(h),
        Value::List(vs) | Value::Tuple(vs) | Value::Set(vs) => {
            vs.len().hash(h);
            for v in vs {
                hash_value(v, h);
            }
        }
        Value::Dict(kvs) => {
            kvs.len().hash(h);
            for (k, v) in kvs {
                hash_value(k, h);
                hash_value(v, h);
            }
        }
        Value::Global(m, n) => {
            m.hash(h);
            n.hash(h);
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickleError {
    #[error("pickle truncated at byte {0}")]
    Truncated(usize),
    #[error("unsupported pickle opcode 0x{op:02x} at byte {pos}")]
    UnsupportedOpcode { op: u8, pos: usize },
    #[error("pickle global {0} is not allowed")]
    ForbiddenGlobal(String),
    #[error("malformed pickle at byte {pos}: {what}")]
    Malformed { pos: usize, what: String },
    #[error("pickle does not end with STOP")]
    NoStop,
    #[error("pickle copies its values more than it may")]
    TooLarge,
    #[error("pickle nests values deeper than {0}")]
    TooDeep(usize),
}

/// How deeply values may nest (Python's default recursion limit): every
/// walk over a value, dropping it included, recurses once per level.
pub const MAX_DEPTH: usize = 1000;
/// While decoding, one level more: the argument tuple of `set(...)` (how
/// protocol 2 writes a set) nests one level deeper than the set.
const MAX_BUILD_DEPTH: usize = MAX_DEPTH + 1;

/// The memo and DUP copy values where Python shares them, so a pickle of a
/// few hundred bytes could ask for exponentially many copies. The copies
/// may weigh (values plus text bytes) this many times the pickle's size,
/// plus [`COPY_ALLOWANCE`]; Swift's pickles copy at most a few times their
/// size.
const COPY_FACTOR: usize = 16;
const COPY_ALLOWANCE: usize = 1 << 16;

/// Decodes one pickle. Trailing bytes after STOP are ignored, as Python does.
pub fn loads(data: &[u8]) -> Result<Value, PickleError> {
    Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        depths: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        memo_keys: HashSet::new(),
        fetched: fetched_memo_keys(data),
        copy_budget: data
            .len()
            .saturating_mul(COPY_FACTOR)
            .saturating_add(COPY_ALLOWANCE),
    }
    .run()
}

/// How much copying `v` costs: one per value, plus the bytes of its text.
fn weight(v: &Value) -> usize {
    let mut total = 0usize;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        total = total.saturating_add(1);
        match v {
            Value::Bytes(b) => total = total.saturating_add(b.len()),
            Value::Str(s) => total = total.saturating_add(s.len()),
            Value::Global(m, n) => total = total.saturating_add(m.len() + n.len()),
            Value::List(items) | Value::Tuple(items) | Value::Set(items) => todo.extend(items),
            Value::Dict(items) => {
                for (k, v) in items {
                    todo.push(k);
                    todo.push(v);
                }
            }
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
        }
    }
    total
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// How deeply each value on the stack nests (0 for a value that holds
    /// no other).
    depths: Vec<usize>,
    marks: Vec<usize>,
    /// Copies of the memoized values that are fetched again.
    memo: HashMap<u64, (Value, usize)>,
    /// Every key memoized so far (MEMOIZE's next key is their count).
    memo_keys: HashSet<u64>,
    /// The keys some GET fetches (see [`fetched_memo_keys`]).
    fetched: HashSet<u64>,
    /// What copies may still weigh.
    copy_budget: usize,
}

impl<'a> Unpickler<'a> {
    fn malformed<T>(&self, what: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Malformed {
            pos: self.pos,
            what: what.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated(self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16le(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32le(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64le(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_u64(&mut self, n: u64) -> Result<usize, PickleError> {
        usize::try_from(n).map_err(|_| PickleError::Truncated(self.pos))
    }

    /// A text line without its trailing newline.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated(self.pos));
        };
        self.pos += nl + 1;
        Ok(&rest[..nl])
    }

    /// The top value and how deeply it nests.
    fn pop_entry(&mut self) -> Result<(Value, usize), PickleError> {
        match (self.stack.pop(), self.depths.pop()) {
            (Some(v), Some(d)) => Ok((v, d)),
            _ => self.malformed("stack underflow"),
        }
    }

    fn pop_value(&mut self) -> Result<Value, PickleError> {
        Ok(self.pop_entry()?.0)
    }

    /// The top value, to fill with items nesting `depth` deep.
    fn top_to_fill(&mut self, depth: usize) -> Result<&mut Value, PickleError> {
        let Some(top_depth) = self.depths.last_mut() else {
            return self.malformed("empty stack");
        };
        let depth = (*top_depth).max(depth + 1);
        if depth > MAX_BUILD_DEPTH {
            return Err(PickleError::TooDeep(MAX_DEPTH));
        }
        *top_depth = depth;
        let pos = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            pos,
            what: "empty stack".into(),
        })
    }

    /// The values above the last mark, and how deeply the deepest nests.
    fn pop_mark_values(&mut self) -> Result<(Vec<Value>, usize), PickleError> {
        let Some(mark) = self.marks.pop() else {
            return self.malformed("no mark");
        };
        if mark > self.stack.len() {
            return self.malformed("mark beyond stack");
        }
        let depth = self.depths.split_off(mark).into_iter().max().unwrap_or(0);
        Ok((self.stack.split_off(mark), depth))
    }

    /// Pushes a value that holds no other.
    fn push(&mut self, v: Value) {
        self.stack.push(v);
        self.depths.push(0);
    }

    /// Pushes a container of `items` nesting `depth` deep.
    fn push_container(&mut self, v: Value, items: usize, depth: usize) -> Result<(), PickleError> {
        let depth = if items == 0 { 0 } else { depth + 1 };
        if depth > MAX_BUILD_DEPTH {
            return Err(PickleError::TooDeep(MAX_DEPTH));
        }
        self.stack.push(v);
        self.depths.push(depth);
        Ok(())
    }

    /// Charges a copy weighing `cost` to the budget, before it is made.
    fn charge(&mut self, cost: usize) -> Result<(), PickleError> {
        if cost > self.copy_budget {
            return Err(PickleError::TooLarge);
        }
        self.copy_budget -= cost;
        Ok(())
    }

    /// A copy of the top value and its depth.
    fn copy_top(&mut self, what: &str) -> Result<(Value, usize), PickleError> {
        let Some(cost) = self.stack.last().map(weight) else {
            return self.malformed(format!("{what} on empty stack"));
        };
        self.charge(cost)?;
        match (self.stack.last(), self.depths.last()) {
            (Some(top), Some(&depth)) => Ok((top.clone(), depth)),
            _ => self.malformed(format!("{what} on empty stack")),
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        if self.stack.is_empty() {
            return self.malformed("memo put on empty stack");
        }
        self.memo_keys.insert(key);
        if self.fetched.contains(&key) {
            let entry = self.copy_top("memo put")?;
            self.memo.insert(key, entry);
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let Some(cost) = self.memo.get(&key).map(|(v, _)| weight(v)) else {
            return self.malformed(format!("memo key {key} missing"));
        };
        self.charge(cost)?;
        if let Some((v, depth)) = self.memo.get(&key) {
            self.stack.push(v.clone());
            self.depths.push(*depth);
        }
        Ok(())
    }

    fn text_int(&self, line: &[u8]) -> Result<i64, PickleError> {
        match text_int(line) {
            Some(v) => Ok(v),
            None => self.malformed(format!("bad integer {:?}", String::from_utf8_lossy(line))),
        }
    }

    fn set_items(&mut self, pairs: Vec<Value>, depth: usize) -> Result<(), PickleError> {
        if pairs.len() & 1 == 1 {
            return self.malformed("odd number of dict items");
        }
        if pairs.is_empty() {
            return match self.stack.last() {
                Some(Value::Dict(_)) => Ok(()),
                _ => self.malformed("SETITEM(S) on a non-dict"),
            };
        }
        let target = self.top_to_fill(depth)?;
        match target {
            Value::Dict(items) => {
                let mut it = pairs.into_iter();
                let n = it.len() / 2;
                let kv = std::iter::from_fn(move || match (it.next(), it.next()) {
                    (Some(k), Some(v)) => Some((k, v)),
                    _ => None,
                });
                dict_insert_all(items, ExactPairs { inner: kv, left: n });
                Ok(())
            }
            _ => self.malformed("SETITEM(S) on a non-dict"),
        }
    }

    fn append_items(&mut self, values: Vec<Value>, depth: usize) -> Result<(), PickleError> {
        if values.is_empty() {
            return match self.stack.last() {
                Some(Value::List(_) | Value::Set(_)) => Ok(()),
                _ => self.malformed("APPEND(S) on a non-list"),
            };
        }
        match self.top_to_fill(depth)? {
            Value::List(items) | Value::Set(items) => {
                items.extend(values);
                Ok(())
            }
            _ => self.malformed("APPEND(S) on a non-list"),
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(module, name) = callable else {
            return self.malformed("REDUCE on a non-global");
        };
        let args = match args {
            Value::Tuple(a) => a,
            _ => return self.malformed("REDUCE arguments are not a tuple"),
        };
        let builtin = module == "__builtin__" || module == "builtins";
        match (module.as_str(), name.as_str()) {
            ("_codecs", "encode") => match args.as_slice() {
                [Value::Str(text), Value::Str(enc)] => encode_text(text, enc)
                    .map(Value::Bytes)
                    .ok_or(())
                    .or_else(|_| self.malformed("unencodable _codecs.encode argument")),
                [Value::Str(text)] => Ok(Value::Bytes(text.as_bytes().to_vec())),
                _ => self.malformed("bad _codecs.encode arguments"),
            },
            (_, "bytes") | (_, "bytearray") if builtin => match args.as_slice() {
                [] => Ok(Value::Bytes(Vec::new())),
                [Value::Bytes(b)] => Ok(Value::Bytes(b.clone())),
                [Value::Str(text), Value::Str(enc)] => encode_text(text, enc)
                    .map(Value::Bytes)
                    .ok_or(())
                    .or_else(|_| self.malformed("unencodable bytes() argument")),
                [Value::List(ints)] => {
                    let mut out = Vec::with_capacity(ints.len());
                    for i in ints {
                        match i {
                            Value::Int(n) if (0..=255).contains(n) => out.push(*n as u8),
                            _ => return self.malformed("bad bytes() list"),
                        }
                    }
                    Ok(Value::Bytes(out))
                }
                _ => self.malformed("bad bytes() arguments"),
            },
            (_, "set") | (_, "frozenset") if builtin => match args.into_iter().next() {
                None => Ok(Value::Set(Vec::new())),
                Some(Value::List(v)) | Some(Value::Tuple(v)) | Some(Value::Set(v)) => {
                    Ok(Value::Set(v))
                }
                Some(_) => self.malformed("bad set() arguments"),
            },
            (_, "dict") if builtin => match args.into_iter().next() {
                None => Ok(Value::Dict(Vec::new())),
                Some(Value::Dict(d)) => Ok(Value::Dict(d)),
                Some(_) => self.malformed("bad dict() arguments"),
            },
            ("copy_reg", "_reconstructor") | ("copyreg", "_reconstructor") => {
                // (cls, base, state): for dict subclasses the state is the
                // dict's content.
                match args.into_iter().nth(2) {
                    Some(Value::Dict(d)) => Ok(Value::Dict(d)),
                    _ => Ok(Value::Dict(Vec::new())),
                }
            }
            _ if is_dict_class(&module, &name) => match args.into_iter().next() {
                Some(Value::Dict(d)) => Ok(Value::Dict(d)),
                _ => Ok(Value::Dict(Vec::new())),
            },
            _ => Err(PickleError::ForbiddenGlobal(format!("{module}.{name}"))),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let op_pos = self.pos;
            let op = self.u8().map_err(|_| PickleError::NoStop)?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.u64le()?;
                }
                b'.' => {
                    let (v, depth) = self.pop_entry()?;
                    if depth > MAX_DEPTH {
                        return Err(PickleError::TooDeep(MAX_DEPTH));
                    }
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop_value()?;
                }
                b'1' => {
                    self.pop_mark_values()?;
                }
                b'2' => {
                    let (top, depth) = self.copy_top("DUP")?;
                    self.stack.push(top);
                    self.depths.push(depth);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' => {
                    let line = self.line()?;
                    match line {
                        b"01" => self.push(Value::Bool(true)),
                        b"00" => self.push(Value::Bool(false)),
                        _ => {
                            let v = self.text_int(line)?;
                            self.push(Value::Int(v));
                        }
                    }
                }
                b'L' => {
                    let line = self.line()?;
                    let v = self.text_int(line)?;
                    self.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.u32le()? as i32;
                    self.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16le()?;
                    self.push(Value::Int(i64::from(v)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        let n = self.u32le()? as i32;
                        if n < 0 {
                            return self.malformed("negative LONG4 length");
                        }
                        n as usize
                    };
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return self.malformed("integer too large");
                    }
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'F' => {
                    let line = self.line()?;
                    let s = std::str::from_utf8(line).unwrap_or("").trim();
                    match s.parse::<f64>() {
                        Ok(v) => self.push(Value::Float(v)),
                        Err(_) => return self.malformed("bad float"),
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'S' => {
                    let line = self.line()?;
                    let v = match unquote_string(line) {
                        Some(v) => v,
                        None => return self.malformed("bad STRING literal"),
                    };
                    self.push(Value::Bytes(v));
                }
                b'T' => {
                    let n = self.u32le()? as i32;
                    if n < 0 {
                        return self.malformed("negative BINSTRING length");
                    }
                    let b = self.take(n as usize)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b'U' | b'C' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b'B' => {
                    let n = self.u32le()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                0x8e | 0x96 => {
                    let n = self.u64le()?;
                    let n = self.len_u64(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b'V' => {
                    let line = self.line()?;
                    match raw_unicode_unescape(line) {
                        Some(s) => self.push(Value::Str(s)),
                        None => return self.malformed("bad UNICODE literal"),
                    }
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32le()? as usize,
                        0x8c => usize::from(self.u8()?),
                        _ => {
                            let n = self.u64le()?;
                            self.len_u64(n)?
                        }
                    };
                    let b = self.take(n)?;
                    match std::str::from_utf8(b) {
                        Ok(s) => self.push(Value::Str(s.to_string())),
                        Err(_) => {
                            // Python writes lone surrogates with
                            // "surrogatepass"; keep what we can.
                            self.push(Value::Str(String::from_utf8_lossy(b).into_owned()))
                        }
                    }
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let (items, depth) = self.pop_mark_values()?;
                    self.push(Value::Dict(Vec::new()));
                    self.set_items(items, depth)?;
                }
                b's' => {
                    let (v, vd) = self.pop_entry()?;
                    let (k, kd) = self.pop_entry()?;
                    self.set_items(vec![k, v], vd.max(kd))?;
                }
                b'u' => {
                    let (items, depth) = self.pop_mark_values()?;
                    self.set_items(items, depth)?;
                }
                b']' => self.push(Value::List(Vec::new())),
                b'l' => {
                    let (items, depth) = self.pop_mark_values()?;
                    let n = items.len();
                    self.push_container(Value::List(items), n, depth)?;
                }
                b'a' => {
                    let (v, depth) = self.pop_entry()?;
                    self.append_items(vec![v], depth)?;
                }
                b'e' => {
                    let (items, depth) = self.pop_mark_values()?;
                    self.append_items(items, depth)?;
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let (items, depth) = self.pop_mark_values()?;
                    let n = items.len();
                    self.push_container(Value::Tuple(items), n, depth)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    let mut depth = 0;
                    for _ in 0..n {
                        let (v, d) = self.pop_entry()?;
                        items.push(v);
                        depth = depth.max(d);
                    }
                    items.reverse();
                    self.push_container(Value::Tuple(items), n, depth)?;
                }
                0x8f => self.push(Value::Set(Vec::new())),
                0x90 => {
                    let (items, depth) = self.pop_mark_values()?;
                    self.append_items(items, depth)?;
                }
                0x91 => {
                    let (items, depth) = self.pop_mark_values()?;
                    let n = items.len();
                    self.push_container(Value::Set(items), n, depth)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let k = self.text_int(line)?;
                    self.memo_put(k as u64)?;
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u64::from(k))?;
                }
                b'r' => {
                    let k = self.u32le()?;
                    self.memo_put(u64::from(k))?;
                }
                0x94 => {
                    let k = self.memo_keys.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let k = self.text_int(line)?;
                    self.memo_get(k as u64)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u64::from(k))?;
                }
                b'j' => {
                    let k = self.u32le()?;
                    self.memo_get(u64::from(k))?;
                }
                b'c' => {
                    let module = String::from_utf8_lossy(self.line()?).into_owned();
                    let name = String::from_utf8_lossy(self.line()?).into_owned();
                    self.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop_value()?;
                    let module = self.pop_value()?;
                    match (module, name) {
                        // No module or name holds a newline; one would not
                        // survive being written as GLOBAL's lines.
                        (Value::Str(m), Value::Str(n)) if m.contains('\n') || n.contains('\n') => {
                            return self.malformed("STACK_GLOBAL name with a newline")
                        }
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n)),
                        _ => return self.malformed("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    // A result holds at most what its argument tuple held,
                    // one level less deep.
                    let (args, depth) = self.pop_entry()?;
                    let callable = self.pop_value()?;
                    let v = self.reduce(callable, args)?;
                    let depth = match &v {
                        Value::List(items) | Value::Tuple(items) | Value::Set(items)
                            if !items.is_empty() =>
                        {
                            depth.saturating_sub(1)
                        }
                        Value::Dict(items) if !items.is_empty() => depth.saturating_sub(1),
                        _ => 0,
                    };
                    self.stack.push(v);
                    self.depths.push(depth);
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only dict subclasses.
                    let _args = self.pop_value()?;
                    match self.pop_value()? {
                        Value::Global(m, n) if is_dict_class(&m, &n) => {
                            self.push(Value::Dict(Vec::new()))
                        }
                        Value::Global(m, n) => {
                            return Err(PickleError::ForbiddenGlobal(format!("{m}.{n}")))
                        }
                        _ => return self.malformed("NEWOBJ on a non-class"),
                    }
                }
                b'b' => {
                    // BUILD: instance state of a dict subclass; its items
                    // were already set, so the attribute state is dropped.
                    self.pop_value()?;
                }
                _ => return Err(PickleError::UnsupportedOpcode { op, pos: op_pos }),
            }
        }
    }
}

/// The memo keys a pickle's GET opcodes fetch, found by walking its
/// opcodes without building values. The walk stops at STOP or at anything
/// it does not understand, where decoding will stop too.
fn fetched_memo_keys(data: &[u8]) -> HashSet<u64> {
    let mut fetched = HashSet::new();
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: u64| -> Option<&[u8]> {
        let n = usize::try_from(n).ok()?;
        let end = pos.checked_add(n).filter(|&e| e <= data.len())?;
        let out = &data[*pos..end];
        *pos = end;
        Some(out)
    };
    let uint = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
    };
    let line = |pos: &mut usize| -> Option<&[u8]> {
        let nl = data.get(*pos..)?.iter().position(|&b| b == b'\n')?;
        let out = &data[*pos..*pos + nl];
        *pos += nl + 1;
        Some(out)
    };
    loop {
        let Some(&op) = data.get(pos) else {
            return fetched;
        };
        pos += 1;
        let step = match op {
            b'.' => return fetched,
            b'g' => line(&mut pos).and_then(text_int).map(|k| {
                fetched.insert(k as u64);
            }),
            b'h' => take(&mut pos, 1).map(|b| {
                fetched.insert(uint(b));
            }),
            b'j' => take(&mut pos, 4).map(|b| {
                fetched.insert(uint(b));
            }),
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | 0x88
            | 0x89
            | b'}'
            | b'd'
            | b's'
            | b'u'
            | b']'
            | b'l'
            | b'a'
            | b'e'
            | b')'
            | b't'
            | 0x85..=0x87
            | 0x8f
            | 0x90
            | 0x91
            | 0x93
            | b'R'
            | 0x94
            | 0x81
            | b'b' => Some(()),
            b'I' | b'L' | b'F' | b'S' | b'V' | b'p' => line(&mut pos).map(|_| ()),
            b'c' => line(&mut pos).and_then(|_| line(&mut pos)).map(|_| ()),
            0x80 | b'K' | b'q' => take(&mut pos, 1).map(|_| ()),
            b'M' => take(&mut pos, 2).map(|_| ()),
            b'J' | b'r' => take(&mut pos, 4).map(|_| ()),
            b'G' | 0x95 => take(&mut pos, 8).map(|_| ()),
            0x8a | b'U' | b'C' | 0x8c => take(&mut pos, 1)
                .map(uint)
                .and_then(|n| take(&mut pos, n))
                .map(|_| ()),
            // Signed lengths: a negative one is an error when decoding.
            0x8b | b'T' => take(&mut pos, 4)
                .map(|b| i64::from(uint(b) as u32 as i32))
                .and_then(|n| u64::try_from(n).ok())
                .and_then(|n| take(&mut pos, n))
                .map(|_| ()),
            b'B' | b'X' => take(&mut pos, 4)
                .map(uint)
                .and_then(|n| take(&mut pos, n))
                .map(|_| ()),
            0x8e | 0x96 | 0x8d => take(&mut pos, 8)
                .map(uint)
                .and_then(|n| take(&mut pos, n))
                .map(|_| ()),
            _ => None,
        };
        if step.is_none() {
            return fetched;
        }
    }
}

/// An integer written as text (protocol 0), as Python reads it.
fn text_int(line: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(line).unwrap_or("");
    s.trim().trim_end_matches('L').parse::<i64>().ok()
}

fn is_dict_class(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("swift.common.header_key_dict", "HeaderKeyDict")
            | ("swift.common.swob", "HeaderKeyDict")
            | ("__builtin__", "dict")
            | ("builtins", "dict")
            | ("collections", "OrderedDict")
            | ("collections", "defaultdict")
    )
}

fn encode_text(text: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect(),
        "utf8" | "utf-8" | "ascii" => Some(text.as_bytes().to_vec()),
        _ => None,
    }
}

/// Decodes a protocol-0 `STRING` argument: a Python `repr` of a str, in
/// single or double quotes, with backslash escapes.
fn unquote_string(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() < 2 {
        return None;
    }
    let q = line[0];
    if (q != b'\'' && q != b'"') || line[line.len() - 1] != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                let mut n = 1;
                while n < 3 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                            n += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v).ok()?);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decodes Python's "raw-unicode-escape": latin-1 bytes with `\uXXXX` and
/// `\UXXXXXXXX` escapes.
fn raw_unicode_unescape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && matches!(line.get(i + 1), Some(b'u') | Some(b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = std::str::from_utf8(line.get(i + 2..i + 2 + n)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            i += 2 + n;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

/// Encodes a value as Python 3's `pickle.dumps(value, protocol=2)` would,
/// byte for byte.
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        memo_len: 0,
        codecs_encode: None,
        latin1: None,
        builtin_bytes: None,
    };
    p.value(value);
    p.out.push(b'.');
    p.out
}

struct Pickler {
    out: Vec<u8>,
    memo_len: u32,
    codecs_encode: Option<u32>,
    latin1: Option<u32>,
    builtin_bytes: Option<u32>,
}

const BATCH: usize = 1000;

impl Pickler {
    fn put(&mut self) -> u32 {
        let idx = self.memo_len;
        self.memo_len += 1;
        if idx < 256 {
            self.out.push(b'q');
            self.out.push(idx as u8);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
        idx
    }

    fn get(&mut self, idx: u32) {
        if idx < 256 {
            self.out.push(b'h');
            self.out.push(idx as u8);
        } else {
            self.out.push(b'j');
            self.out.extend_from_slice(&idx.to_le_bytes());
        }
    }

    fn str_raw(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn global(&mut self, module: &str, name: &str, slot: fn(&mut Self) -> &mut Option<u32>) {
        if let Some(idx) = *slot(self) {
            self.get(idx);
        } else {
            self.out.push(b'c');
            self.out.extend_from_slice(module.as_bytes());
            self.out.push(b'\n');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'\n');
            let idx = self.put();
            *slot(self) = Some(idx);
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        if b.is_empty() {
            self.global("__builtin__", "bytes", |p| &mut p.builtin_bytes);
            self.out.push(b')');
            self.out.push(b'R');
            self.put();
            return;
        }
        self.global("_codecs", "encode", |p| &mut p.codecs_encode);
        let text: String = b.iter().map(|&c| char::from(c)).collect();
        self.str_raw(&text);
        self.put();
        if let Some(idx) = self.latin1 {
            self.get(idx);
        } else {
            self.str_raw("latin1");
            let idx = self.put();
            self.latin1 = Some(idx);
        }
        self.out.push(0x86);
        self.put();
        self.out.push(b'R');
        self.put();
    }

    fn int(&mut self, i: i64) {
        if (0..256).contains(&i) {
            self.out.push(b'K');
            self.out.push(i as u8);
        } else if (0..65536).contains(&i) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(i as u16).to_le_bytes());
        } else if i32::try_from(i).is_ok() {
            self.out.push(b'J');
            self.out.extend_from_slice(&(i as i32).to_le_bytes());
        } else {
            // LONG1: minimal two's complement little-endian.
            let full = i.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let last = full[n - 1];
                let prev_sign = full[n - 2] & 0x80;
                if (last == 0 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.push(0x8a);
            self.out.push(n as u8);
            self.out.extend_from_slice(&full[..n]);
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::None => self.out.push(b'N'),
            Value::Bool(true) => self.out.push(0x88),
            Value::Bool(false) => self.out.push(0x89),
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => {
                self.str_raw(s);
                self.put();
            }
            Value::Bytes(b) => self.bytes(b),
            Value::List(items) => {
                self.out.push(b']');
                self.put();
                self.batch(items.iter(), items.len(), b'a', b'e', |p, v| p.value(v));
            }
            Value::Set(items) => {
                // Protocol 2 has no set opcodes: set([...]).
                self.out.push(b'c');
                self.out.extend_from_slice(b"__builtin__\nset\n");
                self.put();
                self.out.push(b']');
                self.put();
                self.batch(items.iter(), items.len(), b'a', b'e', |p, v| p.value(v));
                self.out.push(0x85);
                self.put();
                self.out.push(b'R');
                self.put();
            }
            Value::Tuple(items) => {
                if items.is_empty() {
                    self.out.push(b')');
                    return;
                }
                if items.len() <= 3 {
                    for i in items {
                        self.value(i);
                    }
                    self.out.push(0x84 + items.len() as u8);
                } else {
                    self.out.push(b'(');
                    for i in items {
                        self.value(i);
                    }
                    self.out.push(b't');
                }
                self.put();
            }
            Value::Global(module, name) => {
                self.out.push(b'c');
                self.out.extend_from_slice(module.as_bytes());
                self.out.push(b'\n');
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b'\n');
                self.put();
            }
            Value::Dict(items) => {
                self.out.push(b'}');
                self.put();
                self.batch(items.iter(), items.len(), b's', b'u', |p, (k, v)| {
                    p.value(k);
                    p.value(v);
                });
            }
        }
    }

    fn batch<'v, T: 'v>(
        &mut self,
        items: impl Iterator<Item = T>,
        len: usize,
        one: u8,
        many: u8,
        mut each: impl FnMut(&mut Self, T),
    ) {
        let mut items = items.peekable();
        let mut left = len;
        while left > 0 {
            let n = left.min(BATCH);
            if n > 1 {
                self.out.push(b'(');
            }
            for _ in 0..n {
                if let Some(item) = items.next() {
                    each(self, item);
                }
            }
            self.out.push(if n > 1 { many } else { one });
            left -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hashes.pkl-sized dict (4,096 suffixes) round-trips.
    #[test]
    fn a_dict_of_every_suffix_round_trips() {
        let d = Value::Dict(
            (0..4096)
                .map(|i| {
                    (
                        Value::Str(format!("{i:03x}")),
                        Value::Str(format!("{i:032x}")),
                    )
                })
                .collect(),
        );
        assert_eq!(loads(&dumps(&d)).unwrap(), d);
    }

    #[test]
    fn reads_python3_protocol2_bytes_dict() {
        // pickle.dumps({b'a': b'', b'k': b'\xc3\xa9'}, 2) under Python 3.
        let data = b"\x80\x02}q\x00(c_codecs\nencode\nq\x01X\x01\x00\x00\x00aq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05c__builtin__\nbytes\nq\x06)Rq\x07h\x01X\x01\x00\x00\x00kq\x08h\x03\x86q\tRq\nh\x01X\x04\x00\x00\x00\xc3\x83\xc2\xa9q\x0bh\x03\x86q\x0cRq\ru.";
        let v = loads(data).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![
                (Value::Bytes(b"a".to_vec()), Value::Bytes(vec![])),
                (Value::Bytes(b"k".to_vec()), Value::Bytes(vec![0xc3, 0xa9])),
            ])
        );
    }

    #[test]
    fn writes_like_python3() {
        let v = Value::Dict(vec![
            (Value::Bytes(b"a".to_vec()), Value::Bytes(vec![])),
            (Value::Bytes(b"k".to_vec()), Value::Bytes(vec![0xc3, 0xa9])),
        ]);
        let out = dumps(&v);
        assert!(out[..32].windows(14).any(|w| w == b"_codecs\nencode"));
        assert_eq!(loads(&out).unwrap(), v);
    }

    #[test]
    fn scalars_round_trip() {
        let v = Value::Dict(vec![
            (Value::Str("valid".into()), Value::Bool(true)),
            (Value::Str("updated".into()), Value::Float(1234.5)),
            (Value::Str("abc".into()), Value::None),
            (Value::Str("n".into()), Value::Int(-5)),
            (Value::Str("big".into()), Value::Int(1 << 40)),
            (Value::Str("neg".into()), Value::Int(-(1 << 40))),
            (Value::Str("m".into()), Value::Int(300)),
            (
                Value::Str("l".into()),
                Value::List(vec![Value::Int(1), Value::Tuple(vec![])]),
            ),
            (
                Value::Str("t".into()),
                Value::Tuple((0..5).map(Value::Int).collect()),
            ),
        ]);
        assert_eq!(loads(&dumps(&v)).unwrap(), v);
    }

    #[test]
    fn protocol0_strings() {
        // pickle.dumps({'a': 'é', 'b': 1}, 0)
        let data = b"(dp0\nVa\np1\nV\xe9\np2\nsVb\np3\nI1\ns.";
        let v = loads(data).unwrap();
        assert_eq!(v.dict_get("a"), Some(&Value::Str("é".into())));
        assert_eq!(v.dict_get("b"), Some(&Value::Int(1)));
        assert_eq!(loads(b"I01\n.").unwrap(), Value::Bool(true));
        assert_eq!(
            loads(b"S'a\\x41\\n'\np0\n.").unwrap(),
            Value::Bytes(b"aA\n".to_vec())
        );
    }

    #[test]
    fn forbidden_global_is_an_error() {
        let data = b"cos\nsystem\n(S'ls'\ntR.";
        assert!(matches!(loads(data), Err(PickleError::ForbiddenGlobal(_))));
    }

    #[test]
    fn a_global_that_cannot_be_written_back_is_an_error() {
        // STACK_GLOBAL takes names from strings, GLOBAL from lines: a name
        // with a newline would come back as another global.
        let data = b"X\x03\x00\x00\x00a\nbX\x01\x00\x00\x00c\x93.";
        assert!(matches!(loads(data), Err(PickleError::Malformed { .. })));
        let v = loads(b"X\x01\x00\x00\x00aX\x01\x00\x00\x00c\x93.").unwrap();
        assert_eq!(v, Value::Global("a".into(), "c".into()));
        assert_eq!(loads(&dumps(&v)).unwrap(), v);
    }

    #[test]
    fn garbage_never_panics() {
        for data in [
            &b""[..],
            b"\x80",
            b"(((((",
            b"X\xff\xff\xff\xff",
            b"h\x05.",
            b"\x8b\xff\xff\xff\x7f",
        ] {
            assert!(loads(data).is_err());
        }
    }

    /// A list, then rounds that each memoize a list of two copies of the
    /// previous round's: `2^rounds` leaves from a few bytes per round.
    fn memo_bomb(rounds: usize) -> Vec<u8> {
        let mut data = b"]q\x00".to_vec();
        for _ in 0..rounds {
            data.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        data.push(b'.');
        data
    }

    #[test]
    fn memo_copies_cannot_blow_up() {
        assert!(matches!(loads(&memo_bomb(22)), Err(PickleError::TooLarge)));
        // A few rounds are fine.
        let mut v = loads(&memo_bomb(3)).unwrap();
        for _ in 0..3 {
            let Value::List(items) = v else {
                panic!("not a list")
            };
            assert_eq!(items.len(), 2);
            v = items[0].clone();
        }
        assert_eq!(v, Value::List(vec![]));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        // TUPLE1 wraps the top of the stack in one more tuple per byte.
        let mut data = b"N".to_vec();
        data.extend(std::iter::repeat_n(0x85, 200_000));
        data.push(b'.');
        assert!(matches!(loads(&data), Err(PickleError::TooDeep(_))));
        let mut data = b"N".to_vec();
        data.extend(std::iter::repeat_n(0x85, MAX_DEPTH));
        data.push(b'.');
        assert!(loads(&data).is_ok());
    }

    #[test]
    fn shared_values_written_with_memoize_come_back_as_copies() {
        // Python 3's pickle.dumps([x, x, 'ab'], 4) for x = ('ab', [1]):
        // MEMOIZE numbers entries itself, and only keys 1 and 3 are fetched.
        let data = b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x02ab\x94]\x94K\x01a\x86\x94h\x03h\x01e.";
        let x = Value::Tuple(vec![
            Value::Str("ab".into()),
            Value::List(vec![Value::Int(1)]),
        ]);
        assert_eq!(
            loads(data).unwrap(),
            Value::List(vec![x.clone(), x, Value::Str("ab".into())])
        );
        assert_eq!(
            fetched_memo_keys(data),
            [1u64, 3].into_iter().collect::<HashSet<_>>()
        );
    }

    #[test]
    fn deep_values_that_load_are_written_so_that_they_load_again() {
        // Tuples nested to the limit, written with every level memoized as
        // Python does: the reader stores only what is fetched again.
        let mut data = b"N".to_vec();
        data.extend(std::iter::repeat_n(0x85, MAX_DEPTH));
        data.push(b'.');
        let v = loads(&data).unwrap();
        assert_eq!(loads(&dumps(&v)).unwrap(), v);
        // A set at the limit: set()'s argument tuple is one level deeper.
        let mut data = b"\x8f(N".to_vec();
        data.extend(std::iter::repeat_n(0x85, MAX_DEPTH - 1));
        data.extend_from_slice(b"\x90.");
        let v = loads(&data).unwrap();
        assert_eq!(loads(&dumps(&v)).unwrap(), v);
    }

    proptest::proptest! {
        /// Batched inserts with an index leave exactly what one-by-one
        /// inserts leave: the same keys, last value wins, first-insertion
        /// order; keys of several kinds, with repeats, and -0.0 == 0.0.
        #[test]
        fn indexed_inserts_match_linear_ones(
            start in proptest::collection::vec((0u8..40, 0i64..5), 0..30),
            batch in proptest::collection::vec((0u8..40, 0i64..5), 0..80),
        ) {
            let key = |k: u8| match k % 4 {
                0 => Value::Int(i64::from(k)),
                1 => Value::Str(format!("s{}", k % 9)),
                2 => Value::Bytes(vec![k % 7]),
                _ => Value::Float(if k % 8 == 3 { -0.0 } else { f64::from(k % 5) }),
            };
            let mut linear: Vec<(Value, Value)> = Vec::new();
            for &(k, v) in &start {
                dict_insert(&mut linear, key(k), Value::Int(v));
            }
            let mut indexed = linear.clone();
            for &(k, v) in &batch {
                dict_insert(&mut linear, key(k), Value::Int(v));
            }
            let pairs: Vec<(Value, Value)> =
                batch.iter().map(|&(k, v)| (key(k), Value::Int(v))).collect();
            dict_insert_all(&mut indexed, pairs.into_iter());
            proptest::prop_assert_eq!(indexed, linear);
        }

        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = loads(&data);
        }

        #[test]
        fn bytes_dicts_round_trip(items in proptest::collection::vec(
            (proptest::collection::vec(proptest::num::u8::ANY, 0..20),
             proptest::collection::vec(proptest::num::u8::ANY, 0..20)), 0..30)) {
            let mut d = Value::Dict(Vec::new());
            for (k, v) in items {
                d.dict_set(Value::Bytes(k), Value::Bytes(v));
            }
            proptest::prop_assert_eq!(loads(&dumps(&d)).unwrap(), d);
        }
    }
}
