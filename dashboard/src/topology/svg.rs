//! Draws a laid-out [`Graph`] as inline SVG: namespace bands, edges as curves (mTLS solid,
//! plaintext dashed, failing red and thicker) with their labels (success rate, RPS, p99 and
//! the mTLS state), and nodes as boxes that link to the workload's page. Styles come from
//! the stylesheet (classes only: the Content-Security-Policy allows no inline styles).
//! Every node and edge carries its numbers as `data-` attributes for tests and tooltips.

use std::fmt::Write as _;
use std::time::Duration;

use super::layout::{Layout, NODE_H};
use super::{Graph, Health};
use crate::format;

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shortens a name to `max` characters with an ellipsis.
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

fn curve(from: (f64, f64), to: (f64, f64)) -> String {
    let dx = ((to.0 - from.0).abs() / 2.0).max(60.0);
    format!(
        "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
        from.0,
        from.1,
        from.0 + dx,
        from.1,
        to.0 - dx,
        to.1,
        to.0,
        to.1
    )
}

/// The SVG of the graph. `window` turns counts into rates.
pub fn render(g: &Graph, l: &Layout, window: Duration) -> String {
    let mut s = String::with_capacity(512 + g.nodes.len() * 700 + g.links.len() * 600);
    let _ = write!(
        s,
        r#"<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" role="img" aria-label="topology: {n} workloads, {e} edges" data-nodes="{n}" data-edges="{e}">"#,
        w = l.width,
        h = l.height,
        n = g.nodes.len(),
        e = g.links.len()
    );
    s.push_str(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"#,
    );
    for b in &l.bands {
        let r = b.rect;
        let _ = write!(
            s,
            r#"<g class="band" data-namespace="{ns}"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="8"/><a href="/namespaces/{ns}"><text x="{:.1}" y="{:.1}" class="band-label">{ns}</text></a></g>"#,
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 10.0,
            r.y + 20.0,
            ns = esc(&b.namespace)
        );
    }
    for (link, geom) in g.links.iter().zip(&l.edges) {
        let health = Health::of(link.golden.success_rate());
        let tls = if link.secured { "mtls" } else { "plain" };
        let (src, dst) = (&g.nodes[link.src].id, &g.nodes[link.dst].id);
        let rate = link.golden.success_rate();
        let rps = link.golden.rps(window);
        let _ = write!(
            s,
            r#"<g class="edge {tls} {h}" data-src="{sns}/{sn}" data-dst="{dns}/{dn}" data-secured="{sec}" data-success-rate="{sr}" data-rps="{rps:.3}" data-p99="{p99}">"#,
            h = health.class(),
            sns = esc(&src.namespace),
            sn = esc(&src.name),
            dns = esc(&dst.namespace),
            dn = esc(&dst.name),
            sec = link.secured,
            sr = rate.map(|r| format!("{r:.4}")).unwrap_or_default(),
            p99 = link
                .golden
                .p99
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
        );
        let _ = write!(
            s,
            r#"<title>{} → {}: {} success, {} rps, p99 {}, {}</title><path d="{}" marker-end="url(#arrow)"/>"#,
            esc(&src.name),
            esc(&dst.name),
            format::pct(rate),
            format::rps(rps),
            format::ms(link.golden.p99),
            if link.secured {
                format!("mTLS ({})", esc(link.server_id.as_deref().unwrap_or("")))
            } else {
                "plaintext".into()
            },
            curve(geom.from, geom.to)
        );
        let lr = geom.label;
        if (lr.y + lr.h / 2.0 - geom.anchor.1).abs() > 4.0 {
            let _ = write!(
                s,
                r#"<line class="leader" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                geom.anchor.0,
                geom.anchor.1,
                lr.x + lr.w / 2.0,
                lr.y + lr.h / 2.0
            );
        }
        let _ = write!(
            s,
            r#"<g class="elabel"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="4"/><text x="{:.1}" y="{:.1}">{} · {} rps</text><text x="{:.1}" y="{:.1}">p99 {} · {}</text></g></g>"#,
            lr.x,
            lr.y,
            lr.w,
            lr.h,
            lr.x + 6.0,
            lr.y + 11.0,
            format::pct(rate),
            format::rps(rps),
            lr.x + 6.0,
            lr.y + 24.0,
            format::ms(link.golden.p99),
            if link.secured { "mTLS" } else { "plaintext" },
        );
    }
    for (node, r) in g.nodes.iter().zip(&l.nodes) {
        let rate = node.golden.and_then(|g| g.success_rate());
        let health = Health::of(rate);
        let rps = node.golden.map(|g| g.rps(window)).unwrap_or(0.0);
        let sub = match node.golden {
            Some(g) if g.requests() > 0.0 => format!(
                "{} · {} rps · p99 {}",
                format::pct(rate),
                format::rps(rps),
                format::ms(g.p99)
            ),
            _ => format!(
                "{}/{} meshed · no inbound traffic",
                node.pods.meshed, node.pods.total
            ),
        };
        let _ = write!(
            s,
            r#"<g class="node {h}" data-node="{ns}/{name}"><a href="{href}"><title>{kind} {ns}/{name} — {meshed}/{total} pods meshed</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6"/><text x="{:.1}" y="{:.1}" class="name">{label}</text><text x="{:.1}" y="{:.1}" class="sub">{sub}</text></a></g>"#,
            r.x,
            r.y,
            r.w,
            r.h,
            r.x + 8.0,
            r.y + 16.0,
            r.x + 8.0,
            r.y + NODE_H - 9.0,
            h = health.class(),
            ns = esc(&node.id.namespace),
            name = esc(&node.id.name),
            href = esc(&node.id.href()),
            kind = node.id.kind.name(),
            meshed = node.pods.meshed,
            total = node.pods.total,
            label = esc(&short(&node.id.name, 26)),
            sub = esc(&sub),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::fake::FakeCluster;
    use crate::topology::layout::layout;

    #[test]
    fn draws_edges_with_numbers_and_mtls() {
        let d = FakeCluster::demo().snapshot();
        let g = Graph::build(&d.metrics, &d.edges);
        let svg = render(&g, &layout(&g), Duration::from_secs(30));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains(r#"data-src="demo/client" data-dst="demo/web" data-secured="true""#),
            "{svg}"
        );
        assert!(svg.contains("mTLS"));
        assert!(
            svg.contains(r#"class="edge plain fail""#),
            "web → db fails half: {svg}"
        );
        assert!(svg.contains(r#"href="/namespaces/demo/deployments/web""#));
        assert!(!svg.contains("style="), "no inline styles under the CSP");
    }

    #[test]
    fn escapes_names() {
        assert_eq!(esc(r#"<a&"'>"#), "&lt;a&amp;&quot;&#39;&gt;");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}
