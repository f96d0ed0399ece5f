//! Word error rate, to measure a transcript against what was said.

/// (substitutions + deletions + insertions) / reference words, after lower-casing
/// and dropping punctuation; 0.0 is perfect. An empty reference gives 0.0 for an
/// empty hypothesis and 1.0 otherwise.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let reference = words(reference);
    let hypothesis = words(hypothesis);
    if reference.is_empty() {
        return if hypothesis.is_empty() { 0.0 } else { 1.0 };
    }
    edit_distance(&reference, &hypothesis) as f64 / reference.len() as f64
}

/// Lower-cased words; apostrophes vanish (`don't` = `dont`), other punctuation splits.
fn words(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else if c != '\'' && c != '’' {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// Levenshtein distance over words, two rows at a time.
fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(wa != wb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_modulo_case_and_punctuation_is_zero() {
        assert_eq!(
            word_error_rate("The cat sat, on the mat.", "the CAT sat on the mat"),
            0.0
        );
        assert_eq!(word_error_rate("don't stop", "Dont stop!"), 0.0);
    }

    #[test]
    fn counts_substitutions_deletions_insertions() {
        // one substitution in four words
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        // one deletion
        assert_eq!(word_error_rate("a b c d", "a b d"), 0.25);
        // two insertions
        assert_eq!(word_error_rate("a b", "a b c d"), 1.0);
        // everything wrong can exceed 1
        assert_eq!(word_error_rate("a", "x y z"), 3.0);
    }

    #[test]
    fn empty_reference() {
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate(" ... ", "hello"), 1.0);
        assert_eq!(word_error_rate("hello world", ""), 1.0);
    }
}
