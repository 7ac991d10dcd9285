// bastion node add|list|remove, and bastion node issue-cert for sites that
// use Bastion's private CA for their modalities' client certificates.
#include <iostream>

#include "cli/commands.h"
#include "crypto/pki.h"
#include "server/composition.h"

namespace bastion::cli {
namespace {

struct NodeOptions {
  std::string config = "/var/lib/bastion/bastion.toml";
  std::string ae, cidr, cert, cert_sha256, perms, role, move_host, name, out_key, out_cert, site = "main", scope = "site";
  int move_port = 0;
  bool server = false;
};

int fail(const Status& s) {
  std::cerr << "node: " << s.toString() << "\n";
  return 1;
}

template <typename Fn>
int withIndex(const NodeOptions& o, Fn fn) {
  auto archive = server::openArchive(o.config);
  if (!archive.ok()) return fail(archive.status());
  return fn(*(*archive)->index, *(*archive)->audit);
}

// A registry change (110113 Network Configuration in exported messages).
Status auditChange(AuditLog& audit, const std::string& action, const Status& s, const std::string& detail) {
  AuditEvent e = systemEvent(Clock::system().now(), "bastion-cli", action, s.ok() ? "success" : "failure",
                             s.ok() ? detail : detail + ": " + s.toString());
  e.user = operatorName();
  e.source_address = "local";
  return audit.append(e);
}

int add(const NodeOptions& o) {
  DicomNode n;
  n.ae_title = o.ae;
  n.source_cidr = o.cidr;
  n.move_host = o.move_host;
  n.move_port = static_cast<uint16_t>(o.move_port);
  n.site = o.site;
  auto scope = parseScopeRules(o.scope);
  if (!scope.ok() || (*scope != kScopeSite && *scope != kScopeAll))
    return fail(invalidArgument("--scope is site or all"));
  n.scope_rules = *scope;
  std::string perm_list = o.perms;
  if (!o.role.empty()) {  // a node role: its permissions from the role table
    auto archive = server::openArchive(o.config);
    if (!archive.ok()) return fail(archive.status());
    auto roles = (*archive)->auth->listRoles();
    if (!roles.ok()) return fail(roles.status());
    bool found = false;
    for (const auto& r : *roles)
      if (r.name == o.role) perm_list += (perm_list.empty() ? "" : ",") + r.permissions, found = true;
    if (!found) return fail(invalidArgument("unknown role " + o.role));
  }
  auto perms = parsePermissions(perm_list);
  if (!perms.ok()) return fail(perms.status());
  if (*perms == 0) return fail(invalidArgument("give --perm or --role"));
  n.permissions = *perms;
  if (!o.cert.empty()) {
    auto fp = crypto::certificateFingerprintFile(o.cert);
    if (!fp.ok()) return fail(fp.status());
    n.cert_sha256 = *fp;
  } else {
    n.cert_sha256 = o.cert_sha256;
  }
  if (n.cert_sha256.size() != 64 && !n.cert_sha256.empty())
    return fail(invalidArgument("certificate fingerprint must be 64 hex digits"));
  return withIndex(o, [&](NodeRegistry& r, AuditLog& audit) {
    Status s = r.add(n);
    Status a = auditChange(audit, "node-add", s,
                           "node=" + n.ae_title + " cidr=" + n.source_cidr + " perms=" + formatPermissions(n.permissions) +
                               " site=" + n.site + " scope=" + formatScopeRules(n.scope_rules));
    if (!s.ok()) return fail(s);
    if (!a.ok()) return fail(a);
    std::cout << "added node " << n.ae_title << " (" << formatPermissions(n.permissions) << ")\n";
    return 0;
  });
}

int list(const NodeOptions& o) {
  return withIndex(o, [&](NodeRegistry& r, AuditLog&) {
    auto all = r.list();
    if (!all.ok()) return fail(all.status());
    for (const auto& n : *all)
      std::cout << n.ae_title << "\t" << n.source_cidr << "\t" << (n.cert_sha256.empty() ? "-" : n.cert_sha256) << "\t"
                << formatPermissions(n.permissions) << "\tsite=" << n.site << "\tscope=" << formatScopeRules(n.scope_rules) << "\t"
                << (n.move_host.empty() ? "-" : n.move_host + ":" + std::to_string(n.move_port)) << "\n";
    return 0;
  });
}

int removeNode(const NodeOptions& o) {
  return withIndex(o, [&](NodeRegistry& r, AuditLog& audit) {
    Status s = r.remove(o.ae);
    Status a = auditChange(audit, "node-remove", s, "node=" + o.ae);
    if (!s.ok()) return fail(s);
    if (!a.ok()) return fail(a);
    std::cout << "removed node " << o.ae << "\n";
    return 0;
  });
}

int issue(const NodeOptions& o) {
  auto cfg = server::loadConfig(o.config);
  if (!cfg.ok()) return fail(cfg.status());
  const std::string ca_key = std::filesystem::path(cfg->tls_key).parent_path().string() + "/ca.key";
  crypto::IssueRequest req{o.name, {}, {}, o.server, 825};
  Status s = crypto::issueCertificate(ca_key, cfg->tls_ca, req, o.out_key, o.out_cert);
  if (!s.ok()) return fail(s);
  auto fp = crypto::certificateFingerprintFile(o.out_cert);
  if (!fp.ok()) return fail(fp.status());
  std::cout << "issued " << o.out_cert << " (key " << o.out_key << ", mode 0600)\nsha256 " << *fp << "\n";
  return 0;
}

}  // namespace

void addNode(CLI::App& app, Action& action) {
  auto o = std::make_shared<NodeOptions>();
  auto* cmd = app.add_subcommand("node", "Manage the DICOM nodes allowed to connect");
  cmd->require_subcommand(1);
  cmd->add_option("--config", o->config, "Path to bastion.toml");
  auto* a = cmd->add_subcommand("add", "Register a node");
  a->add_option("--ae", o->ae, "The node's AE title")->required();
  a->add_option("--cidr", o->cidr, "Address or CIDR it connects from")->required();
  a->add_option("--cert", o->cert, "Its client certificate (PEM); the SHA-256 fingerprint is recorded");
  a->add_option("--cert-sha256", o->cert_sha256, "Or the fingerprint itself");
  a->add_option("--perm", o->perms, "Permissions: echo,store,find,get,move");
  a->add_option("--role", o->role, "Node role whose permissions it gets: modality, workstation");
  a->add_option("--site", o->site, "Site: the studies it stores belong to it");
  a->add_option("--scope", o->scope, "What it sees: site (its site's studies) or all; users through it see no more");
  a->add_option("--move-host", o->move_host, "As a C-MOVE destination: its host");
  a->add_option("--move-port", o->move_port, "As a C-MOVE destination: its TLS port")->check(CLI::Range(0, 65535));
  a->callback([&action, o] { action = [o] { return add(*o); }; });
  auto* l = cmd->add_subcommand("list", "List registered nodes");
  l->callback([&action, o] { action = [o] { return list(*o); }; });
  auto* r = cmd->add_subcommand("remove", "Remove a node");
  r->add_option("--ae", o->ae, "The node's AE title")->required();
  r->callback([&action, o] { action = [o] { return removeNode(*o); }; });
  auto* i = cmd->add_subcommand("issue-cert", "Issue a client certificate from Bastion's private CA");
  i->add_option("--name", o->name, "Common name")->required();
  i->add_option("--out-key", o->out_key, "Private key output (PEM, 0600)")->required();
  i->add_option("--out-cert", o->out_cert, "Certificate output (PEM)")->required();
  i->add_flag("--server", o->server, "Also valid as a TLS server (for C-MOVE destinations)");
  i->callback([&action, o] { action = [o] { return issue(*o); }; });
  for (auto* sub : {a, l, r, i}) sub->add_option("--config", o->config, "Path to bastion.toml");
}

}  // namespace bastion::cli
