//! getopt: short options as qmail's programs take them (djb's sgetopt): bundled flags
//! (`-an`), values attached or separate (`-fS`, `-f S`), `--` or the first non-option ends the
//! options. Bytes, not strings: arguments may be any bytes.
//!
//! The one parser of the getopt-style programs (qmail-inject, sendmail, qmail-tcpsrv,
//! qmail-local): the caller maps [`Opt::Missing`] and [`Opt::Unknown`] to its own usage
//! message and exit code, which clap would not let a program called by other programs choose.
//! Tools for people use clap.

/// One option from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// A flag without a value.
    Flag(u8),
    /// An option that takes a value, with it.
    Value(u8, Vec<u8>),
    /// An option that takes a value, at the end of the arguments without one.
    Missing(u8),
    /// A letter not in the option string.
    Unknown(u8),
}

/// Walks `args` by the option string `spec`: each letter is an option; a letter followed by
/// `:` takes a value.
pub struct Getopt<'a> {
    args: &'a [Vec<u8>],
    spec: &'a [u8],
    /// the argument being read, and the position in it (0: not inside one)
    i: usize,
    j: usize,
    done: bool,
}

impl<'a> Getopt<'a> {
    pub fn new(args: &'a [Vec<u8>], spec: &'a str) -> Self {
        Getopt { args, spec: spec.as_bytes(), i: 0, j: 0, done: false }
    }

    /// Skip what is left of the current argument (options that swallow it, like sendmail's
    /// `-E`).
    pub fn skip_rest(&mut self) {
        if self.j > 0 {
            self.i += 1;
            self.j = 0;
        }
    }

    /// The arguments after the options (call when the iterator is exhausted).
    pub fn rest(&self) -> &'a [Vec<u8>] {
        &self.args[self.i.min(self.args.len())..]
    }

    fn takes_value(&self, c: u8) -> Option<bool> {
        let at = self.spec.iter().position(|&s| s == c && s != b':')?;
        Some(self.spec.get(at + 1) == Some(&b':'))
    }
}

impl Iterator for Getopt<'_> {
    type Item = Opt;

    fn next(&mut self) -> Option<Opt> {
        if self.done {
            return None;
        }
        if self.j == 0 {
            let arg = self.args.get(self.i)?;
            if arg == b"--" {
                self.i += 1;
                self.done = true;
                return None;
            }
            if arg.len() < 2 || arg[0] != b'-' {
                self.done = true;
                return None;
            }
            self.j = 1;
        }
        let arg = &self.args[self.i];
        let c = arg[self.j];
        self.j += 1;
        let at_end = self.j >= arg.len();
        let opt = match self.takes_value(c) {
            None => Opt::Unknown(c),
            Some(false) => Opt::Flag(c),
            Some(true) if !at_end => {
                let v = arg[self.j..].to_vec();
                self.j = arg.len();
                Opt::Value(c, v)
            }
            Some(true) => {
                // the value is the next argument; both are used up
                let opt = match self.args.get(self.i + 1) {
                    Some(v) => Opt::Value(c, v.clone()),
                    None => Opt::Missing(c),
                };
                self.i += 2;
                self.j = 0;
                return Some(opt);
            }
        };
        if self.j >= self.args.get(self.i).map_or(0, Vec::len) {
            self.i += 1;
            self.j = 0;
        }
        Some(opt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], spec: &str) -> (Vec<Opt>, Vec<String>) {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut g = Getopt::new(&args, spec);
        let opts: Vec<Opt> = g.by_ref().collect();
        let rest = g.rest().iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        (opts, rest)
    }

    #[test]
    fn table() {
        use Opt::*;
        let v = |c: u8, s: &str| Value(c, s.as_bytes().to_vec());
        let rows: &[(&[&str], Vec<Opt>, &[&str])] = &[
            (&[], vec![], &[]),
            (&["a@b"], vec![], &["a@b"]),
            (&["-an", "x"], vec![Flag(b'a'), Flag(b'n')], &["x"]),
            (&["-fS", "x"], vec![v(b'f', "S")], &["x"]),
            (&["-f", "S", "x"], vec![v(b'f', "S")], &["x"]),
            (&["-f", "a-long@sender", "x"], vec![v(b'f', "a-long@sender")], &["x"]),
            (&["-f", "-n", "-a"], vec![v(b'f', "-n"), Flag(b'a')], &[]),
            (&["-af", "S"], vec![Flag(b'a'), v(b'f', "S")], &[]),
            (&["-f"], vec![Missing(b'f')], &[]),
            (&["--", "-a"], vec![], &["-a"]),
            (&["-a", "--", "-n"], vec![Flag(b'a')], &["-n"]),
            (&["-", "x"], vec![], &["-", "x"]),
            (&["-z"], vec![Unknown(b'z')], &[]),
            (&["-:"], vec![Unknown(b':')], &[]),
            (&["-a", "x", "-n"], vec![Flag(b'a')], &["x", "-n"]),
        ];
        for (args, opts, rest) in rows {
            let (got, got_rest) = run(args, "anf:");
            assert_eq!(&got, opts, "{args:?}");
            assert_eq!(
                got_rest,
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{args:?}"
            );
        }
    }

    #[test]
    fn skip_rest_swallows_the_argument() {
        let args: Vec<Vec<u8>> =
            ["-Exyz", "-a", "r"].iter().map(|a| a.as_bytes().to_vec()).collect();
        let mut g = Getopt::new(&args, "Ea");
        assert_eq!(g.next(), Some(Opt::Flag(b'E')));
        g.skip_rest();
        assert_eq!(g.next(), Some(Opt::Flag(b'a')));
        assert_eq!(g.next(), None);
        assert_eq!(g.rest(), &args[2..]);
    }
}
