//! S3 request documents (apus-s3 `xml::parse`): any bytes are read into
//! an element tree or refused as MalformedXML, never a panic and never an
//! expanded entity (no text read is longer than the document itself), and
//! every element and attribute name read is a well-formed name.
#![no_main]

use apus_s3::xml::{is_name, parse, Element};
use apus_s3::ErrorCode;
use libfuzzer_sys::fuzz_target;

fn names_ok(e: &Element) -> bool {
    is_name(&e.name)
        && e.attributes.iter().all(|(k, _)| is_name(k))
        && e.children.iter().all(names_ok)
}

fn longest_text(e: &Element) -> usize {
    e.children
        .iter()
        .map(longest_text)
        .max()
        .unwrap_or(0)
        .max(e.text.len())
}

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(root) => {
            assert!(names_ok(&root), "a malformed name was read");
            assert!(longest_text(&root) <= data.len());
        }
        Err(e) => assert_eq!(e.code, ErrorCode::MalformedXML),
    }
});
