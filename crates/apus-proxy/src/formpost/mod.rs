//! Form uploads (Swift's `formpost` middleware): a browser POSTs a
//! `multipart/form-data` form to `/v1/<account>/<container>[/<prefix>]`
//! and each file in it is stored as `<prefix><file name>`, without a
//! token, when the form carries a valid signature. The form is read by
//! [`multipart`], a bounded push-driven reader, and is never whole in
//! memory.

pub mod multipart;
