//! IAB Content Taxonomy 3.0 categories (tier 1 and a set of tier 2), ranked against a
//! video's text by embedding similarity (zero-shot).
