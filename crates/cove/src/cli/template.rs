//! A subset of Go's `text/template`, enough for docker-style `--format` strings:
//! fields (`.A.B`), variables (`$`, `$x`), `range`/`if`/`with`/`else`/`end`, pipelines,
//! parentheses, literals and the functions docker templates use (`json`, `index`, `join`,
//! `len`, `lower`, `upper`, `title`, `split`, `pad`, `truncate`, `print[f|ln]`, comparisons,
//! `and`/`or`/`not`). This file parses; `tmpl_exec.rs` executes.

use super::tmpl_exec::{run, Mode};
pub use super::value::Val;

// ---------------------------------------------------------------------------------------
// Lexing and parsing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(serde_json::Number),
    Ident(String),
    LParen,
    RParen(Vec<String>),
    Pipe,
    Comma,
    Declare,
}

#[derive(Debug, Clone)]
pub(super) enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(Val),
    Func(String),
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
pub(super) struct Pipe {
    pub(super) decl: Vec<String>,
    pub(super) cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

enum Stop {
    Eof,
    End,
    Else,
    ElseIf(Pipe),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex_chain(chars: &[char], i: &mut usize) -> Vec<String> {
    let mut chain = Vec::new();
    while *i < chars.len() && chars[*i] == '.' {
        let start = *i + 1;
        let mut j = start;
        while j < chars.len() && is_ident(chars[j]) {
            j += 1;
        }
        if j == start {
            break;
        }
        chain.push(chars[start..j].iter().collect());
        *i = j;
    }
    chain
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                i += 1;
                toks.push(Tok::RParen(lex_chain(&chars, &mut i)));
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => return Err("variable assignment is not supported".into()),
            '.' => {
                let chain = lex_chain(&chars, &mut i);
                if chain.is_empty() {
                    i += 1;
                }
                toks.push(Tok::Field(chain));
            }
            '$' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                toks.push(Tok::Var(name, lex_chain(&chars, &mut i)));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            s.push(match chars.get(i) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some(&c) => c,
                                None => return Err("unterminated quoted string".into()),
                            });
                        }
                        Some(&c) => s.push(c),
                    }
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Str(s));
            }
            '`' => {
                let rest: String = chars[i + 1..].iter().collect();
                let end = rest.find('`').ok_or("unterminated raw quoted string")?;
                toks.push(Tok::Str(rest[..end].to_string()));
                i += 1 + rest[..end].chars().count() + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n: serde_json::Number =
                    text.parse().map_err(|_| format!("bad number syntax: {text:?}"))?;
                toks.push(Tok::Num(n));
            }
            c if is_ident(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            c => return Err(format!("unexpected {c:?} in command")),
        }
    }
    Ok(toks)
}

fn parse_pipe(toks: &[Tok], i: &mut usize, in_paren: bool) -> Result<Pipe, String> {
    let mut decl = Vec::new();
    match toks.get(*i..) {
        Some([Tok::Var(a, c1), Tok::Comma, Tok::Var(b, c2), Tok::Declare, ..])
            if c1.is_empty() && c2.is_empty() =>
        {
            decl = vec![a.clone(), b.clone()];
            *i += 4;
        }
        Some([Tok::Var(a, c), Tok::Declare, ..]) if c.is_empty() => {
            decl = vec![a.clone()];
            *i += 2;
        }
        _ => {}
    }
    let mut cmds = Vec::new();
    let mut cur: Vec<Arg> = Vec::new();
    loop {
        let Some(tok) = toks.get(*i) else {
            if in_paren {
                return Err("unclosed left paren".into());
            }
            break;
        };
        match tok {
            Tok::RParen(_) if in_paren => break,
            Tok::RParen(_) => return Err("unexpected right paren".into()),
            Tok::Pipe => {
                if cur.is_empty() {
                    return Err("missing command".into());
                }
                cmds.push(std::mem::take(&mut cur));
            }
            Tok::LParen => {
                *i += 1;
                let sub = parse_pipe(toks, i, true)?;
                let Some(Tok::RParen(chain)) = toks.get(*i) else {
                    return Err("unclosed left paren".into());
                };
                cur.push(Arg::Sub(Box::new(sub), chain.clone()));
            }
            Tok::Field(c) => cur.push(Arg::Field(c.clone())),
            Tok::Var(n, c) => cur.push(Arg::Var(n.clone(), c.clone())),
            Tok::Str(s) => cur.push(Arg::Lit(Val::Str(s.clone()))),
            Tok::Num(n) => cur.push(Arg::Lit(Val::Num(n.clone()))),
            Tok::Ident(name) => cur.push(match name.as_str() {
                "true" => Arg::Lit(Val::Bool(true)),
                "false" => Arg::Lit(Val::Bool(false)),
                "nil" => Arg::Lit(Val::Null),
                _ => Arg::Func(name.clone()),
            }),
            Tok::Comma | Tok::Declare => return Err("unexpected token in command".into()),
        }
        *i += 1;
    }
    if cur.is_empty() {
        return Err("missing value for command".into());
    }
    cmds.push(cur);
    Ok(Pipe { decl, cmds })
}

fn pipe_of(toks: &[Tok]) -> Result<Pipe, String> {
    let mut i = 0;
    parse_pipe(toks, &mut i, false)
}

enum Item {
    Text(String),
    Act(Vec<Tok>),
}

fn split_items(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut body = &rest[start + 2..];
        if body.starts_with("- ") {
            text = text.trim_end();
            body = &body[2..];
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        // Find the closing braces outside quotes.
        let (mut quote, mut end) = (None, None);
        let bytes = body.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (None, b'"' | b'`') => quote = Some(bytes[j]),
                (Some(b'"'), b'\\') => j += 1,
                (Some(q), c) if c == q => quote = None,
                (None, b'}') if bytes.get(j + 1) == Some(&b'}') => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let end = end.ok_or("unclosed action")?;
        let mut action = &body[..end];
        trim_next = action.ends_with(" -");
        if trim_next {
            action = &action[..action.len() - 2];
        }
        rest = &body[end + 2..];
        let action = action.trim();
        if action.starts_with("/*") {
            continue;
        }
        items.push(Item::Act(lex(action)?));
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

fn parse_list(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Stop), String> {
    let mut nodes = Vec::new();
    while let Some(item) = items.get(*pos) {
        *pos += 1;
        let toks = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                continue;
            }
            Item::Act(toks) => toks,
        };
        let keyword = match toks.first() {
            Some(Tok::Ident(k)) => k.as_str(),
            None => return Err("missing value for command".into()),
            _ => "",
        };
        match keyword {
            "end" => return Ok((nodes, Stop::End)),
            "else" if toks.len() == 1 => return Ok((nodes, Stop::Else)),
            "else" if toks.get(1) == Some(&Tok::Ident("if".into())) => {
                return Ok((nodes, Stop::ElseIf(pipe_of(&toks[2..])?)));
            }
            "if" | "range" | "with" => {
                let node = parse_block(keyword, pipe_of(&toks[1..])?, items, pos)?;
                nodes.push(node);
            }
            "define" | "template" | "block" | "break" | "continue" | "else" => {
                return Err(format!("{keyword:?} is not supported"));
            }
            _ => nodes.push(Node::Action(pipe_of(toks)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_block(kind: &str, pipe: Pipe, items: &[Item], pos: &mut usize) -> Result<Node, String> {
    let (body, end) = parse_list(items, pos)?;
    let els = match end {
        Stop::Eof => return Err(format!("unexpected EOF: {kind} without end")),
        Stop::End => Vec::new(),
        Stop::Else => match parse_list(items, pos)? {
            (els, Stop::End) => els,
            _ => return Err("expected end after else".into()),
        },
        Stop::ElseIf(p) => vec![parse_block("if", p, items, pos)?],
    };
    Ok(match kind {
        "if" => Node::If(pipe, body, els),
        "range" => Node::Range(pipe, body, els),
        _ => Node::With(pipe, body, els),
    })
}

impl Template {
    /// Parse a template.
    pub fn parse(src: &str) -> Result<Template, String> {
        let items = split_items(src)?;
        let mut pos = 0;
        match parse_list(&items, &mut pos)? {
            (nodes, Stop::Eof) => Ok(Template { nodes }),
            (_, Stop::End) => Err("unexpected {{end}}".into()),
            _ => Err("unexpected {{else}}".into()),
        }
    }

    /// Run the template on `data` (a missing key renders as `<no value>`).
    pub fn execute(&self, data: &Val) -> Result<String, String> {
        run(&self.nodes, data, Mode::Normal)
    }

    /// Run the template on a list row (docker's typed `ls`/`ps` contexts): an unknown
    /// field is an error, and `json` of an object escapes HTML characters.
    pub fn execute_row(&self, data: &Val) -> Result<String, String> {
        run(&self.nodes, data, Mode::Row)
    }

    /// Run the template in docker's "header" mode: formatting functions pass their first
    /// argument through, so `{{json .Labels}}` renders the `Labels` column title.
    pub fn execute_header(&self, headers: &Val) -> Result<String, String> {
        run(&self.nodes, headers, Mode::Header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Val {
        serde_json::from_str(
            r#"{"Name":"web","Id":"abc","Labels":{"b":"2","a":"1"},"Count":3,"Empty":"",
                "Flag":false,"IPAM":{"Driver":"default","Config":[{"Subnet":"10.0.0.0/24","Gateway":"10.0.0.1"}]},
                "Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]},
                "Nets":{"b":{"IP":"10.0.0.3"},"a":{"IP":"10.0.0.2"}},"Names":["x","y"],"Nil":null}"#,
        )
        .unwrap()
    }

    fn run(t: &str) -> String {
        Template::parse(t).unwrap_or_else(|e| panic!("{t}: {e}")).execute(&data()).unwrap()
    }

    #[test]
    fn fields_and_nesting() {
        assert_eq!(run("{{.Name}}"), "web");
        assert_eq!(run("x {{.IPAM.Driver}} y"), "x default y");
        assert_eq!(run("{{.Count}}"), "3");
        assert_eq!(run("{{.Missing}}"), "<no value>");
        assert_eq!(run("{{.Nil}}"), "<nil>");
        assert_eq!(run("{{.Labels}}"), "map[a:1 b:2]");
        assert_eq!(run("{{.Names}}"), "[x y]");
        assert!(run("{{.}}").starts_with("map["));
    }

    #[test]
    fn json_keeps_order() {
        assert_eq!(
            run("{{json .IPAM}}"),
            r#"{"Driver":"default","Config":[{"Subnet":"10.0.0.0/24","Gateway":"10.0.0.1"}]}"#
        );
        assert_eq!(run("{{json .Labels}}"), r#"{"a":"1","b":"2"}"#);
        assert_eq!(run("{{json .Names}}"), r#"["x","y"]"#);
        assert_eq!(run("{{json .Name}}"), r#""web""#);
    }

    #[test]
    fn range_and_variables() {
        assert_eq!(run("{{range .Nets}}{{.IP}} {{end}}"), "10.0.0.2 10.0.0.3 ");
        assert_eq!(run("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}"), "a=1;b=2;");
        assert_eq!(run("{{range $i, $n := .Names}}{{$i}}:{{$n}} {{end}}"), "0:x 1:y ");
        assert_eq!(
            run("{{range .IPAM.Config}}{{.Subnet}} via {{.Gateway}}{{end}}"),
            "10.0.0.0/24 via 10.0.0.1"
        );
        assert_eq!(run("{{range .Nil}}x{{else}}none{{end}}"), "none");
        assert_eq!(run("{{range .Names}}{{$.Name}}{{end}}"), "webweb");
        assert_eq!(run("{{$n := .Name}}{{$n}}!"), "web!");
    }

    #[test]
    fn index_and_parens() {
        assert_eq!(run(r#"{{index .Labels "a"}}"#), "1");
        assert_eq!(run(r#"{{index .Names 1}}"#), "y");
        assert_eq!(run(r#"{{(index (index .Ports "80/tcp") 0).HostPort}}"#), "8080");
        assert_eq!(
            run(r#"{{index .Ports "80/tcp" 0 | json}}"#),
            r#"{"HostIp":"0.0.0.0","HostPort":"8080"}"#
        );
        assert_eq!(run(r#"{{index .Labels "zz"}}"#), "<no value>");
    }

    #[test]
    fn conditionals_and_functions() {
        assert_eq!(run("{{if .Flag}}y{{else}}n{{end}}"), "n");
        assert_eq!(run("{{if .Empty}}a{{else if .Name}}b{{else}}c{{end}}"), "b");
        assert_eq!(run(r#"{{if eq .Name "web" "db"}}yes{{end}}"#), "yes");
        assert_eq!(run("{{if and .Name (not .Flag)}}ok{{end}}"), "ok");
        assert_eq!(run("{{len .Names}} {{join .Names \",\"}}"), "2 x,y");
        assert_eq!(run("{{upper .Name}} {{.Name | printf \"%s!\"}}"), "WEB web!");
        assert_eq!(run("{{with .IPAM}}{{.Driver}}{{end}}"), "default");
        assert_eq!(run("{{- \"a\" }}  \n {{- .Name -}}  b"), "awebb");
        assert_eq!(run("{{/* comment */}}z"), "z");
        assert_eq!(run("{{if gt .Count 2}}big{{end}}"), "big");
    }

    #[test]
    fn header_mode() {
        let t = Template::parse("{{.ID}}\t{{json .Labels}}\t{{upper .Name}}").unwrap();
        let h = Val::obj([
            ("ID", Val::str("NETWORK ID")),
            ("Labels", Val::str("LABELS")),
            ("Name", Val::str("NAME")),
        ]);
        assert_eq!(t.execute_header(&h).unwrap(), "NETWORK ID\tLABELS\tNAME");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.Name").is_err());
        assert!(Template::parse("{{if .Name}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let t = Template::parse("{{nosuch .Name}}").unwrap();
        assert!(t.execute(&data()).is_err());
        let t = Template::parse("{{.Name.Foo}}").unwrap();
        assert!(t.execute(&data()).is_err());
        let t = Template::parse("{{.Nope}}").unwrap();
        assert_eq!(t.execute(&data()).unwrap(), "<no value>");
        assert!(t.execute_row(&data()).is_err());
        let t = Template::parse("{{json .}}").unwrap();
        let row = Val::obj([("Ports", Val::str("0.0.0.0:80->80/tcp"))]);
        assert_eq!(t.execute_row(&row).unwrap(), r#"{"Ports":"0.0.0.0:80-\u003e80/tcp"}"#);
    }
}
