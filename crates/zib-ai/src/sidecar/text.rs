//! The transcript's words: sentences with times, segment intents, keywords and the
//! extractive summary.

use std::collections::HashMap;

use crate::whisper::Segment;

/// Speech that starts before this is the hook.
pub(super) const HOOK_SECS: f64 = 10.0;
/// The summary's word budget (the API promises 150–200 words when there is that much).
pub(super) const SUMMARY_MAX_WORDS: usize = 200;
const SUMMARY_ENOUGH_WORDS: usize = 150;

/// Phrases that ask the viewer to do something: a segment holding one is a `cta`.
const CTA_CUES: &[&str] = &[
    "subscribe",
    "like and share",
    "hit the bell",
    "notification bell",
    "link in the description",
    "link below",
    "links below",
    "in the description",
    "click the link",
    "click below",
    "follow me",
    "follow us",
    "buy now",
    "buy it",
    "shop now",
    "sign up",
    "use code",
    "discount code",
    "check out my",
    "check out our",
    "visit our",
    "download the",
    "comment below",
    "let me know in the comments",
    "leave a comment",
];

/// English function words and the fillers speech is full of; never keywords.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren't",
    "around",
    "as",
    "at",
    "actually",
    "back",
    "basically",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "can't",
    "cannot",
    "come",
    "could",
    "couldn't",
    "did",
    "didn't",
    "do",
    "does",
    "doesn't",
    "doing",
    "don't",
    "down",
    "during",
    "each",
    "even",
    "every",
    "few",
    "first",
    "for",
    "from",
    "further",
    "get",
    "gets",
    "getting",
    "go",
    "goes",
    "going",
    "gonna",
    "good",
    "got",
    "gotta",
    "had",
    "hadn't",
    "has",
    "hasn't",
    "have",
    "haven't",
    "having",
    "he",
    "he'd",
    "he'll",
    "he's",
    "her",
    "here",
    "here's",
    "hers",
    "herself",
    "hey",
    "him",
    "himself",
    "his",
    "how",
    "how's",
    "i",
    "i'd",
    "i'll",
    "i'm",
    "i've",
    "if",
    "in",
    "into",
    "is",
    "isn't",
    "it",
    "it's",
    "its",
    "itself",
    "just",
    "kind",
    "know",
    "let",
    "let's",
    "like",
    "little",
    "lot",
    "make",
    "many",
    "may",
    "maybe",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "mustn't",
    "my",
    "myself",
    "need",
    "new",
    "next",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "oh",
    "okay",
    "ok",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "ought",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "pretty",
    "put",
    "really",
    "right",
    "said",
    "same",
    "say",
    "see",
    "shall",
    "she",
    "she'd",
    "she'll",
    "she's",
    "should",
    "shouldn't",
    "so",
    "some",
    "something",
    "sort",
    "still",
    "such",
    "sure",
    "take",
    "than",
    "that",
    "that's",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "there's",
    "these",
    "they",
    "they'd",
    "they'll",
    "they're",
    "they've",
    "thing",
    "things",
    "think",
    "this",
    "those",
    "through",
    "to",
    "too",
    "two",
    "uh",
    "um",
    "under",
    "until",
    "up",
    "us",
    "use",
    "very",
    "want",
    "was",
    "wasn't",
    "way",
    "we",
    "we'd",
    "we'll",
    "we're",
    "we've",
    "well",
    "were",
    "weren't",
    "what",
    "what's",
    "when",
    "when's",
    "where",
    "where's",
    "which",
    "while",
    "who",
    "who's",
    "whom",
    "why",
    "why's",
    "will",
    "with",
    "won't",
    "would",
    "wouldn't",
    "yeah",
    "yes",
    "yet",
    "you",
    "you'd",
    "you'll",
    "you're",
    "you've",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "three",
    "today",
    "gonna",
    "wanna",
    "lets",
    "im",
    "dont",
    "youre",
    "thats",
    "it'll",
];

/// A sentence of the transcript with the time it is spoken (its segment's time
/// shared out by length when a segment holds several).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sentence {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// The sentences of `segments` (split after `.`, `!`, `?`), in order.
pub(super) fn sentences(segments: &[Segment]) -> Vec<Sentence> {
    let mut out = Vec::new();
    for seg in segments {
        let parts = split_sentences(&seg.text);
        let total: usize = parts.iter().map(|p| p.chars().count()).sum();
        let span = (seg.end_secs - seg.start_secs).max(0.0);
        let mut at = 0usize;
        for part in parts {
            let len = part.chars().count();
            let (a, b) = if total == 0 {
                (seg.start_secs, seg.end_secs)
            } else {
                (
                    seg.start_secs + span * at as f64 / total as f64,
                    seg.start_secs + span * (at + len) as f64 / total as f64,
                )
            };
            at += len;
            out.push(Sentence {
                start: a,
                end: b,
                text: part,
            });
        }
    }
    out
}

fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        let ends = matches!(c, '.' | '!' | '?')
            && chars.peek().is_none_or(|n| n.is_whitespace() || *n == '"');
        if ends {
            push_sentence(&mut out, &mut cur);
        }
    }
    push_sentence(&mut out, &mut cur);
    out
}

fn push_sentence(out: &mut Vec<String>, cur: &mut String) {
    let s = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    cur.clear();
    if s.chars().any(char::is_alphanumeric) {
        out.push(s);
    }
}

/// The intent of each segment (docs/sidecar.md): `cta` when it holds a call to
/// action, `hook` while speech starts in the first [`HOOK_SECS`], `payoff` for the
/// closing stretch (the last segment, and any starting in the last 10% of the
/// speech or its last 10 s), `setup` right after the hook, `body` otherwise.
pub(super) fn intents(segments: &[Segment]) -> Vec<&'static str> {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Vec::new();
    };
    let speech_start = first.start_secs;
    let speech_end = last.end_secs.max(last.start_secs);
    let span = (speech_end - speech_start).max(0.0);
    let payoff_from = speech_end - (span * 0.1).max(10.0).min(span / 2.0);
    let hook_end = HOOK_SECS;
    let setup_end = hook_end + (span * 0.15).max(10.0);
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if has_cta(&s.text) {
                "cta"
            } else if s.start_secs < hook_end {
                "hook"
            } else if i + 1 == segments.len() || s.start_secs >= payoff_from {
                "payoff"
            } else if s.start_secs < setup_end {
                "setup"
            } else {
                "body"
            }
        })
        .collect()
}

pub(super) fn has_cta(text: &str) -> bool {
    let t = normalise(text);
    CTA_CUES.iter().any(|c| t.contains(c))
}

/// Lowercase words (letters, digits, inner apostrophes) separated by single spaces:
/// how two readings of the same text are compared.
pub(super) fn normalise(text: &str) -> String {
    words(text).collect::<Vec<_>>().join(" ")
}

/// The lowercase words of `text`.
pub(super) fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .map(|w| {
            w.trim_matches(|c| c == '\'' || c == '’')
                .replace('’', "'")
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
}

fn is_keyword(w: &str) -> bool {
    w.chars().count() >= 3
        && w.chars().any(char::is_alphabetic)
        && !w.chars().all(|c| c.is_ascii_digit())
        && !STOPWORDS.contains(&w)
}

/// Up to `n` of the most frequent non-stopwords of `texts`, most frequent first
/// (ties: the one said first).
pub(super) fn keywords<'a>(texts: impl IntoIterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    let mut order = 0usize;
    for text in texts {
        for w in words(text).filter(|w| is_keyword(w)) {
            let e = counts.entry(w).or_insert((0, order));
            e.0 += 1;
            order += 1;
        }
    }
    let mut ranked: Vec<(String, (usize, usize))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
    ranked.into_iter().take(n).map(|(w, _)| w).collect()
}

/// The extractive summary: the most central sentences (by `centrality`, one per
/// sentence) until ~150 words, never past [`SUMMARY_MAX_WORDS`], in spoken order.
pub(super) fn summary(sentences: &[&str], centrality: &[f32]) -> String {
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    let c = |i: usize| centrality.get(i).copied().unwrap_or(0.0);
    order.sort_by(|&a, &b| c(b).total_cmp(&c(a)).then(a.cmp(&b)));
    let mut picked = Vec::new();
    let mut total = 0usize;
    for i in order {
        let n = sentences[i].split_whitespace().count();
        if total + n > SUMMARY_MAX_WORDS {
            continue;
        }
        picked.push(i);
        total += n;
        if total >= SUMMARY_ENOUGH_WORDS {
            break;
        }
    }
    if picked.is_empty() {
        // Every sentence is longer than the budget: the most central one, cut.
        return match (0..sentences.len()).max_by(|&a, &b| c(a).total_cmp(&c(b))) {
            Some(i) => sentences[i]
                .split_whitespace()
                .take(SUMMARY_MAX_WORDS)
                .collect::<Vec<_>>()
                .join(" "),
            None => String::new(),
        };
    }
    picked.sort_unstable();
    picked
        .iter()
        .map(|&i| sentences[i])
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` cut to at most `max` characters at a word boundary (with `…` when cut).
pub(super) fn shorten(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut out = String::new();
    for w in text.split(' ') {
        if out.chars().count() + w.chars().count() + 1 > max.saturating_sub(1) {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    if out.is_empty() {
        out = text.chars().take(max.saturating_sub(1)).collect();
    }
    out.push('…');
    out
}

/// `word` with its first letter upper-cased.
pub(super) fn capitalise(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(a: f64, b: f64, t: &str) -> Segment {
        Segment {
            start_secs: a,
            end_secs: b,
            text: t.into(),
        }
    }

    #[test]
    fn segments_split_into_timed_sentences() {
        let s = sentences(&[
            seg(0.0, 10.0, " Hello there. How are you? Fine"),
            seg(10.0, 12.0, "..."),
        ]);
        let texts: Vec<&str> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["Hello there.", "How are you?", "Fine"]);
        assert_eq!(s[0].start, 0.0);
        assert!(s[0].end <= s[1].start + 1e-9 && s[1].end <= s[2].start + 1e-9);
        assert!((s[2].end - 10.0).abs() < 1e-9);
        // Decimals are not sentence ends.
        assert_eq!(split_sentences("It costs 3.50 today. Yes").len(), 2);
    }

    #[test]
    fn intents_follow_position_and_cue_phrases() {
        let segs = [
            seg(0.0, 5.0, "Here is the trick nobody tells you."),
            seg(12.0, 20.0, "First we need some flour."),
            seg(40.0, 50.0, "Then knead the dough."),
            seg(60.0, 70.0, "Knead it again."),
            seg(80.0, 88.0, "Subscribe for more recipes!"),
            seg(90.0, 100.0, "And that is how you get perfect pasta."),
        ];
        assert_eq!(
            intents(&segs),
            ["hook", "setup", "body", "body", "cta", "payoff"]
        );
        assert!(intents(&[]).is_empty());
        assert_eq!(intents(&segs[..1]), ["hook"]);
    }

    #[test]
    fn keywords_skip_stopwords_and_rank_by_frequency() {
        let k = keywords(
            [
                "The pasta, the sauce and the pasta water.",
                "PASTA sauce 2024",
            ],
            3,
        );
        assert_eq!(k, ["pasta", "sauce", "water"]);
        assert!(keywords(["", "  "], 5).is_empty());
    }

    #[test]
    fn the_summary_keeps_central_sentences_in_order_within_budget() {
        let s = ["One two three.", "Four five.", "Six."];
        assert_eq!(
            summary(&s, &[0.1, 0.9, 0.5]),
            "One two three. Four five. Six."
        );
        let long = "word ".repeat(120);
        let s = [long.as_str(), "Short one.", long.as_str()];
        let out = summary(&s, &[0.9, 0.1, 0.8]);
        assert!(out.split_whitespace().count() <= SUMMARY_MAX_WORDS);
        assert!(out.ends_with("Short one."));
        assert_eq!(summary(&[], &[]), "");
        let huge = "w ".repeat(500);
        assert_eq!(
            summary(&[huge.as_str()], &[f32::NAN])
                .split_whitespace()
                .count(),
            200
        );
    }

    #[test]
    fn shorten_cuts_at_words() {
        assert_eq!(shorten("a  b", 10), "a b");
        assert_eq!(shorten("hello wonderful world", 16), "hello wonderful…");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
    }
}
