//! A reader for the markup `render` writes (every attribute double-quoted and escaped), for
//! tests only: the unit tests use it as `render::testing`, the integration tests include this
//! file by path. It depends on nothing but std so both can.

use std::collections::HashMap;

/// One start tag: its name, attributes (unescaped) and the text right after it.
#[derive(Debug, Clone)]
pub struct Element {
    pub attrs: HashMap<String, String>,
    pub text: String,
}

impl Element {
    pub fn get(&self, name: &str) -> &str {
        self.attrs
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no attribute {name} in {:?}", self.attrs))
    }

    pub fn num(&self, name: &str) -> f64 {
        self.get(name)
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.attrs
            .get("class")
            .is_some_and(|c| c.split(' ').any(|c| c == class))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// Every `<tag ...>` in `markup`, in order.
pub fn elements(markup: &str, tag: &str) -> Vec<Element> {
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut rest = markup;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        if !after.starts_with([' ', '>', '/']) {
            rest = after;
            continue;
        }
        let end = after.find('>').expect("a tag ends");
        let mut attrs = HashMap::new();
        let mut body = &after[..end];
        while let Some(eq) = body.find("=\"") {
            let name = body[..eq].trim().to_string();
            let value_end = body[eq + 2..].find('"').expect("quoted value");
            attrs.insert(name, unescape(&body[eq + 2..eq + 2 + value_end]));
            body = &body[eq + 2 + value_end + 1..];
        }
        let text_end = after[end + 1..].find('<').unwrap_or(0);
        out.push(Element {
            attrs,
            text: unescape(&after[end + 1..end + 1 + text_end]),
        });
        rest = &after[end..];
    }
    out
}
