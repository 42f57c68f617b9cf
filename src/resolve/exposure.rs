//! A service's public exposures: hostname, path prefix and port (the edge family owns
//! how they are served: WAF, certificate, rate limit).

use super::cx::Cx;
use crate::diag::Diagnostic;
use crate::load::schema::*;
use crate::model::values;
use crate::model::*;

impl Cx<'_, '_> {
    /// Each `expose` entry that resolves, keeping its position in the array.
    pub(super) fn exposures(&mut self, name: &str, s: &RawService, ports: &[Port]) -> Vec<Expose> {
        let mut expose = Vec::new();
        for (index, e) in s.expose.iter().enumerate() {
            let eloc = self.loc(e.span());
            let e = e.get_ref();
            let hostname =
                self.required(&e.hostname, &eloc, "hostname", "expose").and_then(|v| self.value(v, values::dns_name));
            let path = match &e.path {
                Some(p) => self.value(p, values::abs_path),
                None => Some(At { value: "/".to_string(), loc: eloc.clone() }),
            };
            let port = match &e.port {
                Some(p) => Some(At { value: p.get_ref().clone(), loc: self.loc(p.span()) }),
                None => ports.first().map(|p| At { value: p.name.clone(), loc: eloc.clone() }),
            };
            let port = match port {
                Some(p) => Some(p),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            "expose-without-port",
                            format!("service `{name}` is exposed but listens on no port"),
                            eloc.clone(),
                        )
                        .help("declare the port it serves on, e.g. `ports = { http = 8080 }`"),
                    );
                    None
                }
            };
            if let (Some(hostname), Some(path), Some(port)) = (hostname, path, port) {
                expose.push(Expose {
                    index,
                    hostname,
                    path,
                    port,
                    websocket: e.websocket.as_ref().is_some_and(|b| *b.get_ref()),
                    loc: eloc,
                });
            }
        }
        expose
    }
}
