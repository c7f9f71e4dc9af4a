//! S3's request documents (CompleteMultipartUpload, Delete,
//! AccessControlPolicy, VersioningConfiguration, ...) read into a small
//! element tree.
//!
//! Clients send these documents to be parsed, so the parser is the
//! attack surface: a DOCTYPE (and with it every user-defined entity, the
//! XXE and "billion laughs" families) is refused outright, only XML's five
//! predefined entities and character references are expanded, and depth
//! and element count are bounded. The caller bounds the document's size
//! before reading it.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::error::{ErrorCode, S3Error};

/// Deepest nesting any S3 document needs is four; this leaves room.
const MAX_DEPTH: usize = 16;
/// A CompleteMultipartUpload of 10,000 parts is 30,001 elements.
const MAX_ELEMENTS: usize = 40_000;

/// One element: its local name (namespace prefix dropped), its
/// attributes by local name, its child elements and its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The attribute by local name (`xsi:type` is `type`).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn malformed() -> S3Error {
    S3Error::new(ErrorCode::MalformedXML)
}

/// Whether `name` can be an XML name: no markup, quotes, blanks or
/// control characters, and not starting with a digit, `-` or `.`.
pub fn is_name(name: &str) -> bool {
    let bad = |c: char| {
        c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '&' | '"' | '\'' | '=' | '/')
    };
    name.chars()
        .next()
        .is_some_and(|c| !c.is_ascii_digit() && c != '-' && c != '.')
        && !name.chars().any(bad)
}

fn local(name: &[u8]) -> Result<String, S3Error> {
    let name = String::from_utf8(name.to_vec()).map_err(|_| malformed())?;
    if !is_name(&name) {
        return Err(malformed());
    }
    Ok(name)
}

fn open(e: &quick_xml::events::BytesStart<'_>) -> Result<Element, S3Error> {
    let mut el = Element {
        name: local(e.local_name().as_ref())?,
        ..Element::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|_| malformed())?;
        let value = attr.unescape_value().map_err(|_| malformed())?;
        el.attributes
            .push((local(attr.key.local_name().as_ref())?, value.into_owned()));
    }
    Ok(el)
}

/// Parses a whole document into its root element. Anything not
/// well-formed, a DOCTYPE, an unknown entity, more than one root, or a
/// document past the depth and element bounds is `MalformedXML`.
pub fn parse(doc: &[u8]) -> Result<Element, S3Error> {
    parse_with(doc, false)
}

/// As [`parse`], but a DOCTYPE is skipped instead of refused, and a
/// reference to any entity other than XML's five is dropped, never
/// expanded: what s3api's parser (entities not resolved) makes of the
/// documents it accepts with a DOCTYPE, such as an AccessControlPolicy.
pub fn parse_skipping_doctype(doc: &[u8]) -> Result<Element, S3Error> {
    parse_with(doc, true)
}

fn parse_with(doc: &[u8], skip_doctype: bool) -> Result<Element, S3Error> {
    let mut seen_doctype = false;
    let mut reader = Reader::from_reader(doc);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|_| malformed())?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if root.is_some() || count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(malformed());
                }
                let el = open(e)?;
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(malformed)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|_| malformed())?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(malformed()),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|_| malformed())?;
                stack.last_mut().ok_or_else(malformed)?.text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten().ok_or_else(malformed)?
                } else {
                    match r.as_ref() {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"quot" => '"',
                        b"apos" => '\'',
                        // Declared (or not) in the DOCTYPE: left out.
                        _ if seen_doctype => continue,
                        _ => return Err(malformed()),
                    }
                };
                stack.last_mut().ok_or_else(malformed)?.text.push(c);
            }
            Event::DocType(_)
                if skip_doctype && !seen_doctype && root.is_none() && stack.is_empty() =>
            {
                seen_doctype = true
            }
            Event::DocType(_) => return Err(malformed()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed());
    }
    root.ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_a_delete_document_with_namespaces_and_entities() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Quiet>true</Quiet>
  <Object><Key>a&amp;b&#x3C;&#62;</Key></Object>
  <Object><Key><![CDATA[<raw>]]></Key><VersionId>v1</VersionId></Object>
</Delete>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Delete");
        assert_eq!(root.child_text("Quiet"), Some("true"));
        let keys: Vec<&str> = root
            .children_named("Object")
            .filter_map(|o| o.child_text("Key"))
            .collect();
        assert_eq!(keys, ["a&b<>", "<raw>"]);
        assert_eq!(
            root.children_named("Object")
                .nth(1)
                .unwrap()
                .child_text("VersionId"),
            Some("v1")
        );
    }

    #[test]
    fn reads_prefixed_attributes_by_local_name() {
        let doc = br#"<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group"><URI>u</URI></Grantee>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.attribute("type"), Some("Group"));
        assert_eq!(root.child_text("URI"), Some("u"));
    }

    #[test]
    fn refuses_doctype_entities_and_malformed_documents() {
        let xxe = br#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>"#;
        let laughs = br#"<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>"#;
        for doc in [
            &xxe[..],
            &laughs[..],
            b"<a>&unknown;</a>",
            b"<a><b></a></b>",
            b"<a>",
            b"",
            b"text",
            b"<a/><b/>",
            b"<a></a>trailing",
            b"<a\x00b/>",
            b"<1a/>",
            b"<a x\x01y='1'/>",
        ] {
            let err = parse(doc).unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::MalformedXML,
                "{:?}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn skips_a_doctype_and_drops_its_entities_when_asked() {
        let doc = br#"<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<A><ID>id&xxe;</ID><N>a&amp;b</N></A>"#;
        assert!(parse(doc).is_err());
        let root = parse_skipping_doctype(doc).unwrap();
        assert_eq!(root.child_text("ID"), Some("id"));
        assert_eq!(root.child_text("N"), Some("a&b"));
        // Without a DOCTYPE an unknown entity is still an error.
        assert!(parse_skipping_doctype(b"<a>&x;</a>").is_err());
        let two = b"<!DOCTYPE a><!DOCTYPE b><a/>";
        assert!(parse_skipping_doctype(two).is_err());
    }

    #[test]
    fn bounds_depth_and_element_count() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let wide = format!("<r>{}</r>", "<p/>".repeat(MAX_ELEMENTS));
        assert!(parse(wide.as_bytes()).is_err());
    }
}
