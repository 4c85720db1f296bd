//! The Gateway role: routes attached to the listeners of the Gateways (and ListenerSets) of
//! our class, their status, and the served Gateway's listeners.

use super::gateway_selection::ServedGateway;
use super::http_routes::CompiledHttpRoute;
use super::parents::resolved_refs;
use super::{issue_err, object_key, Builder};
use crate::config::{Document, Resource};
use crate::snapshot::{BuildOptions, GatewayPort, ListenerRoutes, Role, State};
use routing::gateway::{Attachment, GatewayInput, ListenerSetInput, ListenerState, RouteInput};
use routing::ServiceKey;

impl<'a> Builder<'a> {
    /// Attaches the compiled routes to the listeners of the Gateways that get a status — our
    /// class's, and the served one whatever its class — and reports every ListenerSet.
    pub(super) fn attach_to_gateways(
        &mut self,
        docs: &[&'a Document],
        compiled: &[CompiledHttpRoute<'_>],
        opts: &BuildOptions,
        served: &ServedGateway,
    ) -> Attachment {
        let inputs: Vec<GatewayInput<'_>> = docs
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Gateway(g) => Some((d, &**g)),
                _ => None,
            })
            .filter(|(d, g)| {
                g.spec.gateway_class_name == opts.gateway_class
                    || (served.role == Some(Role::Gateway) && is_served(served, &object_key(d)))
            })
            .map(|(d, g)| GatewayInput {
                gateway: object_key(d),
                spec: g,
                generation: d.generation,
            })
            .collect();
        let route_inputs: Vec<RouteInput<'_>> = compiled
            .iter()
            .map(|c| RouteInput {
                kind: c.kind,
                namespace: &c.doc.object.namespace,
                hostnames: &c.hostnames,
                parents: &c.gateway_parents,
                resolved_refs: resolved_refs(&c.issues),
            })
            .collect();
        let listener_sets = self.listener_sets(docs);
        let set_inputs: Vec<ListenerSetInput> =
            listener_sets.iter().map(|(_, i)| i.clone()).collect();
        let namespaces = &self.namespaces;
        let labels = |ns: &str| namespaces.get(ns).map(|l| (*l).clone());
        let attachment = routing::gateway::attach(&inputs, &set_inputs, &route_inputs, &labels);
        for (d, input) in &listener_sets {
            let state = match attachment.listener_sets.iter().find(|s| s.key == input.key) {
                Some(s) if s.accepted => State::Accepted,
                Some(_) => State::Ignored(format!(
                    "Gateway {} does not allow it (spec.allowedListeners)",
                    input.gateway
                )),
                None => State::Ignored(format!(
                    "its Gateway {} is not of class {} or not in the folder",
                    input.gateway, opts.gateway_class
                )),
            };
            self.status(d, state, Vec::new());
        }
        attachment
    }

    /// The folder's ListenerSets that could be read; the others get an error status.
    fn listener_sets(&mut self, docs: &[&'a Document]) -> Vec<(&'a Document, ListenerSetInput)> {
        let mut out = Vec::new();
        for d in docs {
            let Resource::ListenerSet(ls) = &d.resource else {
                continue;
            };
            match ListenerSetInput::new(ls, &d.object.namespace, &d.object.name, d.generation) {
                Ok(input) => out.push((*d, input)),
                Err(e) => self.status(d, State::Error, vec![issue_err("spec.listeners", e)]),
            }
        }
        out
    }
}

/// In the Gateway role, the served Gateway's listeners (its own and its accepted
/// ListenerSets') that can be served, with their routes, by port, most specific hostname first.
pub(super) fn served_listeners(
    attachment: &Attachment,
    compiled: &[CompiledHttpRoute<'_>],
    served: &ServedGateway,
) -> Vec<GatewayPort> {
    let mut listeners: Vec<GatewayPort> = Vec::new();
    if served.role != Some(Role::Gateway) {
        return listeners;
    }
    let own = attachment
        .gateways
        .iter()
        .filter(|g| is_served(served, &g.gateway))
        .flat_map(|g| g.listeners.iter());
    let from_sets = attachment
        .listener_sets
        .iter()
        .filter(|s| s.accepted && is_served(served, &s.gateway))
        .flat_map(|s| s.listeners.iter());
    for l in own.chain(from_sets).filter(|l| l.served) {
        let lr = listener_routes(l, compiled);
        match listeners.iter_mut().find(|p| p.port == l.port) {
            Some(p) => p.listeners.push(lr),
            None => listeners.push(GatewayPort {
                port: l.port,
                listeners: vec![lr],
            }),
        }
    }
    for p in &mut listeners {
        p.listeners
            .sort_by_key(|l| routing::hostname::specificity(l.hostname.as_deref()));
    }
    listeners.sort_by_key(|p| p.port);
    listeners
}

fn listener_routes(l: &ListenerState, compiled: &[CompiledHttpRoute<'_>]) -> ListenerRoutes {
    let routes = l
        .routes
        .iter()
        .map(|a| (compiled[a.route].route.clone(), a.hostnames.clone()))
        .collect();
    ListenerRoutes::new(l.name.clone(), l.port, l.hostname.clone(), routes)
}

fn is_served(served: &ServedGateway, key: &ServiceKey) -> bool {
    key.namespace == served.gateway.namespace && key.name == served.gateway.name
}
