#include "server/config.h"

#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <toml++/toml.h>

#include "bastion/service/node_registry.h"

namespace bastion::server {
namespace {

std::string resolve(const std::filesystem::path& base, const std::string& p) {
  if (p.empty()) return p;
  std::filesystem::path path(p);
  return path.is_absolute() ? p : (base / path).lexically_normal().string();
}

bool isInside(const std::string& file, const std::string& dir) {
  auto f = std::filesystem::weakly_canonical(file).string();
  auto d = std::filesystem::weakly_canonical(dir).string();
  return f.size() > d.size() && f.compare(0, d.size(), d) == 0 && f[d.size()] == '/';
}

template <typename Node>
std::chrono::seconds secondsOr(Node n, std::chrono::seconds d) {
  return std::chrono::seconds(n.value_or(static_cast<int64_t>(d.count())));
}

// [auth] and [auth.oidc].
StatusOr<Config> parseAuth(const toml::table& t, const std::filesystem::path& base, Config c) {
  auto a = t["auth"];
  AuthConfig& x = c.auth;
  x.argon2_ops = static_cast<unsigned long long>(a["argon2_ops"].value_or(static_cast<int64_t>(x.argon2_ops)));
  x.argon2_mem_kib = static_cast<size_t>(a["argon2_mem_kib"].value_or(static_cast<int64_t>(x.argon2_mem_kib)));
  x.blocklist_path = resolve(base, a["blocklist"].value_or(std::string()));
  x.session_idle = secondsOr(a["session_idle_s"], x.session_idle);
  x.session_absolute = secondsOr(a["session_absolute_s"], x.session_absolute);
  x.break_glass = secondsOr(a["break_glass_s"], x.break_glass);
  x.lock_after = static_cast<int>(a["lock_after"].value_or(int64_t{x.lock_after}));
  x.lock_first = secondsOr(a["lock_first_s"], x.lock_first);
  x.lock_max = secondsOr(a["lock_max_s"], x.lock_max);
  x.hard_limit = static_cast<int>(a["hard_limit"].value_or(int64_t{x.hard_limit}));
  x.source_failures = static_cast<int>(a["source_failures"].value_or(int64_t{x.source_failures}));
  x.source_window = secondsOr(a["source_window_s"], x.source_window);
  x.source_block = secondsOr(a["source_block_s"], x.source_block);
  auto o = a["oidc"];
  x.jwks_path = resolve(base, o["jwks"].value_or(std::string()));
  x.jwt_issuer = o["issuer"].value_or(std::string());
  if (auto* aud = o["audiences"].as_array())
    for (auto& v : *aud)
      if (auto s = v.value<std::string>()) x.jwt_audiences.push_back(*s);
  x.jwt_leeway = secondsOr(o["leeway_s"], x.jwt_leeway);
  x.jwt_username_claim = o["username_claim"].value_or(x.jwt_username_claim);
  x.jwt_roles_claim = o["roles_claim"].value_or(x.jwt_roles_claim);
  x.jwt_site_claim = o["site_claim"].value_or(x.jwt_site_claim);
  // Argon2id below OWASP's floor (19 MiB, 2 passes) only for tests, never below 1 MiB.
  if (x.argon2_ops < 1 || x.argon2_ops > 10 || x.argon2_mem_kib < 1024 || x.argon2_mem_kib > (4u << 20) ||
      x.session_idle.count() < 60 || x.session_idle.count() > 1800 || x.session_absolute.count() < 60 ||
      x.session_absolute.count() > 12 * 3600 || x.break_glass.count() < 60 || x.break_glass.count() > 24 * 3600 ||
      x.lock_after < 1 || x.lock_after > 100 || x.lock_first.count() < 1 || x.lock_max < x.lock_first ||
      x.hard_limit < x.lock_after || x.hard_limit > 100 || x.source_failures < 1 || x.jwt_leeway.count() < 0 ||
      x.jwt_leeway.count() > 300)
    return invalidArgument("a value in [auth] is out of range");
  if (!x.jwks_path.empty() && (x.jwt_issuer.empty() || x.jwt_audiences.empty()))
    return invalidArgument("[auth.oidc] needs issuer and audiences with jwks");
  return c;
}

Status parseListen(const toml::table& t, Listen& out) {
  out.address = t["address"].value_or(out.address);
  const int64_t port = t["port"].value_or(int64_t{out.port});
  if (port < 0 || port > 65535) return invalidArgument("listener port out of range");
  out.port = static_cast<uint16_t>(port);
  if (out.address.empty() || out.address == "0.0.0.0" || out.address == "::")
    return invalidArgument("listeners must name an explicit address (not a wildcard)");
  return validateCidr(out.address);
}

}  // namespace

StatusOr<Config> loadConfig(const std::string& path) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "cannot parse " << path << ": " << e.description() << " at " << e.source().begin;
    return invalidArgument(msg.str());
  }
  Config c;
  c.path = path;
  const auto base = std::filesystem::absolute(path).parent_path();
  c.data_dir = resolve(base, t["paths"]["data_dir"].value_or(std::string()));
  c.key_file = resolve(base, t["paths"]["key_file"].value_or(std::string()));
  c.port_file = resolve(base, t["paths"]["port_file"].value_or(std::string()));
  c.tls_ca = resolve(base, t["tls"]["ca"].value_or(std::string()));
  c.tls_cert = resolve(base, t["tls"]["cert"].value_or(std::string()));
  c.tls_key = resolve(base, t["tls"]["key"].value_or(std::string()));
  if (c.data_dir.empty() || c.key_file.empty()) return invalidArgument("paths.data_dir and paths.key_file are required");
  if (isInside(c.key_file, c.data_dir)) return invalidArgument("the key file must live outside the data directory");
  if (c.tls_ca.empty() || c.tls_cert.empty() || c.tls_key.empty())
    return invalidArgument("tls.ca, tls.cert and tls.key are required");

  auto dicom = t["dicom"];
  c.ae_title = dicom["ae_title"].value_or(c.ae_title);
  RETURN_IF_ERROR(validateAeTitle(c.ae_title));
  if (auto* tl = dicom["tls"].as_table()) RETURN_IF_ERROR(parseListen(*tl, c.tls_listen));
  if (auto* pl = dicom["plain"].as_table()) {
    c.plain_enabled = true;
    c.plain_listen = {"", 0};
    RETURN_IF_ERROR(parseListen(*pl, c.plain_listen));
    if (auto* allow = (*pl)["allow"].as_array()) {
      for (auto& a : *allow) {
        auto s = a.value<std::string>();
        if (!s) return invalidArgument("dicom.plain.allow entries must be strings");
        RETURN_IF_ERROR(validateCidr(*s));
        c.plain_allow.push_back(*s);
      }
    }
    if (c.plain_allow.empty()) return invalidArgument("a plaintext listener needs a non-empty allow list");
  }
  if (auto* h = t["http"].as_table()) {
    c.https_enabled = (*h)["enabled"].value_or(false);
    RETURN_IF_ERROR(parseListen(*h, c.https_listen));
    c.https_base_url = (*h)["base_url"].value_or(std::string());
    c.https_max_body = static_cast<uint64_t>((*h)["max_body"].value_or(static_cast<int64_t>(c.https_max_body)));
    c.https_max_connections =
        static_cast<size_t>((*h)["max_connections"].value_or(static_cast<int64_t>(c.https_max_connections)));
    c.https_rate_per_s = (*h)["rate_per_s"].value_or(c.https_rate_per_s);
    c.https_rate_burst = (*h)["rate_burst"].value_or(c.https_rate_burst);
    c.https_user_rate_per_s = (*h)["user_rate_per_s"].value_or(c.https_user_rate_per_s);
    c.https_user_rate_burst = (*h)["user_rate_burst"].value_or(c.https_user_rate_burst);
    // 0: no limit; otherwise at least one request per second and a burst of one.
    const auto rate_ok = [](double rate, double burst) {
      return rate == 0 || (rate >= 1 && rate <= 1e7 && burst >= 1 && burst <= 1e8);
    };
    if (c.https_max_connections < 1 || c.https_max_body < 1024 || !rate_ok(c.https_rate_per_s, c.https_rate_burst) ||
        !rate_ok(c.https_user_rate_per_s, c.https_user_rate_burst))
      return invalidArgument("a value in [http] is out of range");
  }
  if (auto* cd = t["codec"].as_table()) {
    c.codec_workers = static_cast<int>((*cd)["workers"].value_or(int64_t{c.codec_workers}));
    c.codec_memory_mb = static_cast<int>((*cd)["memory_mb"].value_or(int64_t{c.codec_memory_mb}));
    c.codec_timeout_s = static_cast<int>((*cd)["timeout_s"].value_or(int64_t{c.codec_timeout_s}));
    if (c.codec_workers < 1 || c.codec_workers > 64 || c.codec_memory_mb < 64 || c.codec_memory_mb > 65536 ||
        c.codec_timeout_s < 1 || c.codec_timeout_s > 3600)
      return invalidArgument("a value in [codec] is out of range");
  }
  c.retention_days = static_cast<int>(t["retention"]["days"].value_or(int64_t{0}));
  if (c.retention_days < 0 || c.retention_days > 36500) return invalidArgument("[retention] days is out of range");
  if (auto* au = t["audit"].as_table()) {
    auto& ao = c.audit_options;
    ao.checkpoint_every = (*au)["checkpoint_every"].value_or(ao.checkpoint_every);
    ao.checkpoint_interval =
        std::chrono::seconds((*au)["checkpoint_interval_s"].value_or(int64_t{ao.checkpoint_interval.count()}));
    c.audit_site = (*au)["site"].value_or(std::string());
    if (ao.checkpoint_every < 1 || ao.checkpoint_interval.count() < 1)
      return invalidArgument("a value in [audit] is out of range");
    if (auto* collectors = (*au)["syslog"].as_array()) {
      for (auto& node : *collectors) {
        auto* tbl = node.as_table();
        if (!tbl) return invalidArgument("[[audit.syslog]] entries must be tables");
        audit::SyslogCollector sc;
        sc.host = (*tbl)["host"].value_or(std::string());
        sc.port = static_cast<int>((*tbl)["port"].value_or(int64_t{6514}));
        sc.ca_file = resolve(base, (*tbl)["ca"].value_or(std::string()));
        sc.cert_file = resolve(base, (*tbl)["cert"].value_or(std::string()));
        sc.key_file = resolve(base, (*tbl)["key"].value_or(std::string()));
        sc.alert_backlog = (*tbl)["alert_backlog"].value_or(sc.alert_backlog);
        if (sc.host.empty() || sc.port < 1 || sc.port > 65535 || sc.ca_file.empty() || sc.cert_file.empty() ||
            sc.key_file.empty() || sc.alert_backlog < 1)
          return invalidArgument("[[audit.syslog]] needs host, port, ca, cert and key (mutual TLS)");
        c.syslog.push_back(std::move(sc));
      }
    }
  }
  auto lim = t["limits"];
  c.max_associations = static_cast<int>(lim["max_associations"].value_or(int64_t{c.max_associations}));
  c.max_associations_per_node =
      static_cast<int>(lim["max_associations_per_node"].value_or(int64_t{c.max_associations_per_node}));
  c.max_pdu = static_cast<uint32_t>(lim["max_pdu"].value_or(int64_t{c.max_pdu}));
  c.artim_timeout_s = static_cast<int>(lim["artim_timeout_s"].value_or(int64_t{c.artim_timeout_s}));
  c.idle_timeout_s = static_cast<int>(lim["idle_timeout_s"].value_or(int64_t{c.idle_timeout_s}));
  c.max_failed_associations =
      static_cast<int>(lim["max_failed_associations"].value_or(int64_t{c.max_failed_associations}));
  c.failure_window_s = static_cast<int>(lim["failure_window_s"].value_or(int64_t{c.failure_window_s}));
  c.block_s = static_cast<int>(lim["block_s"].value_or(int64_t{c.block_s}));
  c.limits.max_object_size =
      static_cast<uint64_t>(lim["max_object_size"].value_or(static_cast<int64_t>(c.limits.max_object_size)));
  c.limits.max_sequence_depth =
      static_cast<int>(lim["max_sequence_depth"].value_or(int64_t{c.limits.max_sequence_depth}));
  if (c.max_associations < 1 || c.max_associations_per_node < 1 || c.max_pdu < 4096 || c.max_pdu > 131072 ||
      c.artim_timeout_s < 1 || c.idle_timeout_s < 1 || c.max_failed_associations < 1 || c.failure_window_s < 1 ||
      c.block_s < 1 || c.limits.max_sequence_depth < 1 ||
      c.limits.max_sequence_depth > 64)
    return invalidArgument("a value in [limits] is out of range");
  return parseAuth(t, base, c);
}

audit::AuditSource Config::auditSource() const {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {ae_title, audit_site, host};
}

std::string renderConfig(const Config& c) {
  std::ostringstream o;
  o << "# Bastion configuration. Paths are relative to this file unless absolute.\n"
    << "[paths]\n"
    << "data_dir = " << toml::value<std::string>(c.data_dir) << "\n"
    << "# Key-encryption key: mode 0600, never inside data_dir.\n"
    << "key_file = " << toml::value<std::string>(c.key_file) << "\n\n"
    << "[tls]\n"
    << "ca = " << toml::value<std::string>(c.tls_ca) << "\n"
    << "cert = " << toml::value<std::string>(c.tls_cert) << "\n"
    << "key = " << toml::value<std::string>(c.tls_key) << "\n\n"
    << "[dicom]\n"
    << "ae_title = " << toml::value<std::string>(c.ae_title) << "\n\n"
    << "[dicom.tls]\n"
    << "address = " << toml::value<std::string>(c.tls_listen.address) << "\n"
    << "port = " << c.tls_listen.port << "\n\n"
    << "# A plaintext listener exists only if this table is present, e.g.:\n"
    << "# [dicom.plain]\n# address = \"10.0.5.1\"\n# port = 11112\n# allow = [\"10.0.5.0/24\"]\n\n"
    << "[limits]\n"
    << "max_associations = " << c.max_associations << "\n"
    << "max_associations_per_node = " << c.max_associations_per_node << "\n"
    << "max_pdu = " << c.max_pdu << "\n"
    << "artim_timeout_s = " << c.artim_timeout_s << "\n"
    << "idle_timeout_s = " << c.idle_timeout_s << "\n"
    << "# Failed associations (unknown AE, wrong certificate, failed handshake) per source address\n"
    << "max_failed_associations = " << c.max_failed_associations << "\n"
    << "failure_window_s = " << c.failure_window_s << "\n"
    << "block_s = " << c.block_s << "\n"
    << "max_object_size = " << c.limits.max_object_size << "\n"
    << "max_sequence_depth = " << c.limits.max_sequence_depth << "\n";
  return o.str();
}

}  // namespace bastion::server
