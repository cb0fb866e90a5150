//! Page tables (placeholder until the page-table crate lands).
