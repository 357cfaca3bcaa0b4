//! Execution of parsed templates, and the template function library.

use super::template::{Arg, Node, Pipe};
use super::value::Val;
use std::cmp::Ordering;

struct Exec<'a> {
    root: &'a Val,
    vars: Vec<(String, Val)>,
    mode: Mode,
    out: String,
}

/// Execute parsed nodes on `data`.
pub(super) fn run(nodes: &[Node], data: &Val, mode: Mode) -> Result<String, String> {
    let mut ex = Exec { root: data, vars: Vec::new(), mode, out: String::new() };
    ex.nodes(nodes, data)?;
    Ok(ex.out)
}

fn walk(mut v: Val, chain: &[String], strict: bool) -> Result<Val, String> {
    for name in chain {
        v = match v {
            Val::Obj(_) => match v.get(name) {
                Some(found) => found.clone(),
                None if strict => return Err(format!("can't evaluate field {name}")),
                None => Val::NoValue,
            },
            Val::NoValue | Val::Null => Val::NoValue,
            other => {
                return Err(format!("can't evaluate field {name} in type {}", other.type_name()))
            }
        };
    }
    Ok(v)
}

fn cmp_vals(a: &Val, b: &Val) -> Result<Ordering, String> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).ok_or_else(|| "incomparable numbers".to_string())
        }
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Null | Val::NoValue, Val::Null | Val::NoValue) => Ok(Ordering::Equal),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            a.type_name(),
            b.type_name()
        )),
    }
}

fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| matches!(v, Val::Str(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&a.to_text());
    }
    out
}

fn go_sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Skip flags and width; keep the verb.
        while chars.peek().is_some_and(|c| c.is_ascii_digit() || "-+# .".contains(*c)) {
            chars.next();
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(a) if verb == 'q' => {
                    out.push_str(&serde_json::to_string(&a.to_text()).unwrap_or_default())
                }
                Some(a) => out.push_str(&a.to_text()),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn arity(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args for {name}: want {n} got {}", args.len()))
    }
}

fn call(name: &str, args: Vec<Val>, mode: Mode) -> Result<Val, String> {
    const FORMATTERS: &[&str] =
        &["json", "split", "join", "title", "lower", "upper", "pad", "truncate"];
    if mode == Mode::Header && FORMATTERS.contains(&name) {
        return Ok(Val::Str(args.first().map(Val::to_text).unwrap_or_default()));
    }
    let text = |i: usize| args.get(i).map(Val::to_text).unwrap_or_default();
    let int = |i: usize| args.get(i).and_then(Val::as_i64).unwrap_or(0).max(0) as usize;
    Ok(match name {
        "json" => {
            arity(name, &args, 1)?;
            let json = args[0].to_json();
            Val::Str(match (&args[0], mode) {
                // docker marshals its list contexts with HTML escaping.
                (Val::Obj(_), Mode::Row) => {
                    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
                }
                _ => json,
            })
        }
        "index" => {
            let mut it = args.into_iter();
            let mut v = it.next().ok_or("index of nothing")?;
            for key in it {
                v = match (&v, &key) {
                    (Val::Obj(_), Val::Str(k)) => v.get(k).cloned().unwrap_or(Val::NoValue),
                    (Val::Arr(a), Val::Num(n)) => {
                        let i = n.as_u64().ok_or("index must be a non-negative integer")? as usize;
                        a.get(i).cloned().ok_or(format!("index out of range: {i}"))?
                    }
                    (Val::NoValue | Val::Null, _) => Val::NoValue,
                    _ => return Err(format!("can't index item of type {}", v.type_name())),
                };
            }
            v
        }
        "len" => {
            arity(name, &args, 1)?;
            let n = match &args[0] {
                Val::Str(s) => s.chars().count(),
                Val::Arr(a) => a.len(),
                Val::Obj(m) => m.len(),
                v => return Err(format!("len of type {}", v.type_name())),
            };
            Val::Num(n.into())
        }
        "join" => {
            arity(name, &args, 2)?;
            Val::Str(args[0].as_arr().iter().map(Val::to_text).collect::<Vec<_>>().join(&text(1)))
        }
        "split" => {
            arity(name, &args, 2)?;
            Val::Arr(text(0).split(&text(1)).map(Val::str).collect())
        }
        "lower" => Val::Str(text(0).to_lowercase()),
        "upper" => Val::Str(text(0).to_uppercase()),
        "title" => {
            let mut out = String::new();
            let mut start = true;
            for c in text(0).chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = c.is_whitespace();
            }
            Val::Str(out)
        }
        "pad" => Val::Str(format!("{}{}{}", " ".repeat(int(1)), text(0), " ".repeat(int(2)))),
        "truncate" => Val::Str(text(0).chars().take(int(1)).collect()),
        "print" => Val::Str(go_sprint(&args)),
        "println" => {
            Val::Str(format!("{}\n", args.iter().map(Val::to_text).collect::<Vec<_>>().join(" ")))
        }
        "printf" => Val::Str(go_sprintf(&text(0), args.get(1..).unwrap_or(&[]))),
        "not" => {
            arity(name, &args, 1)?;
            Val::Bool(!args[0].truthy())
        }
        "and" => {
            let last = args.len().checked_sub(1).ok_or("and needs arguments")?;
            let i = args.iter().position(|a| !a.truthy()).unwrap_or(last);
            args[i].clone()
        }
        "or" => {
            let last = args.len().checked_sub(1).ok_or("or needs arguments")?;
            let i = args.iter().position(Val::truthy).unwrap_or(last);
            args[i].clone()
        }
        "eq" => {
            let first = args.first().ok_or("eq needs arguments")?;
            let mut any = false;
            for b in &args[1..] {
                any |= cmp_vals(first, b)? == Ordering::Equal;
            }
            Val::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let o = cmp_vals(&args[0], &args[1])?;
            Val::Bool(match name {
                "ne" => o != Ordering::Equal,
                "lt" => o == Ordering::Less,
                "le" => o != Ordering::Greater,
                "gt" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// How fields and functions behave: normal (inspect), list rows, or table headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Normal,
    Row,
    Header,
}

impl Exec<'_> {
    fn var(&self, name: &str) -> Result<Val, String> {
        if name.is_empty() {
            return Ok(self.root.clone());
        }
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: ${name}"))
    }

    fn arg(&mut self, arg: &Arg, dot: &Val) -> Result<Val, String> {
        match arg {
            Arg::Field(chain) => walk(dot.clone(), chain, self.mode == Mode::Row),
            Arg::Var(name, chain) => walk(self.var(name)?, chain, self.mode == Mode::Row),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(name) => call(name, Vec::new(), self.mode),
            Arg::Sub(pipe, chain) => walk(self.pipe(pipe, dot)?, chain, self.mode == Mode::Row),
        }
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Val) -> Result<Val, String> {
        let mut prev: Option<Val> = None;
        for cmd in &pipe.cmds {
            let value = match &cmd[0] {
                Arg::Func(name) => {
                    let mut args = Vec::with_capacity(cmd.len());
                    for a in &cmd[1..] {
                        args.push(self.arg(a, dot)?);
                    }
                    args.extend(prev.take());
                    call(name, args, self.mode)?
                }
                first => {
                    if cmd.len() > 1 || prev.is_some() {
                        return Err("can't give argument to non-function".into());
                    }
                    self.arg(first, dot)?
                }
            };
            prev = Some(value);
        }
        let value = prev.unwrap_or(Val::NoValue);
        if let [name] = pipe.decl.as_slice() {
            self.vars.push((name.clone(), value.clone()));
        }
        Ok(value)
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Val) -> Result<(), String> {
        let scope = self.vars.len();
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.to_text());
                    }
                }
                Node::If(p, then, els) => {
                    let v = self.pipe(p, dot)?;
                    self.nodes(if v.truthy() { then } else { els }, dot)?;
                }
                Node::With(p, body, els) => {
                    let v = self.pipe(p, dot)?;
                    if v.truthy() {
                        self.nodes(body, &v)?;
                    } else {
                        self.nodes(els, dot)?;
                    }
                }
                Node::Range(p, body, els) => self.range(p, body, els, dot)?,
            }
        }
        self.vars.truncate(scope);
        Ok(())
    }

    fn range(&mut self, p: &Pipe, body: &[Node], els: &[Node], dot: &Val) -> Result<(), String> {
        let plain = Pipe { decl: Vec::new(), cmds: p.cmds.clone() };
        let v = self.pipe(&plain, dot)?;
        let items: Vec<(Val, Val)> = match v {
            Val::Arr(a) => {
                a.into_iter().enumerate().map(|(i, v)| (Val::Num(i.into()), v)).collect()
            }
            Val::Obj(mut m) => {
                m.sort_by(|a, b| a.0.cmp(&b.0));
                m.into_iter().map(|(k, v)| (Val::Str(k), v)).collect()
            }
            Val::NoValue | Val::Null => Vec::new(),
            Val::Num(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                .map(|i| (Val::Num(i.into()), Val::Num(i.into())))
                .collect(),
            _ if self.mode == Mode::Header => Vec::new(),
            other => return Err(format!("range can't iterate over {}", other.to_text())),
        };
        if items.is_empty() {
            return self.nodes(els, dot);
        }
        for (key, value) in items {
            let scope = self.vars.len();
            match p.decl.as_slice() {
                [v] => self.vars.push((v.clone(), value.clone())),
                [k, v] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), value.clone()));
                }
                _ => {}
            }
            self.nodes(body, &value)?;
            self.vars.truncate(scope);
        }
        Ok(())
    }
}
