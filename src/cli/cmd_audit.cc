// bastion audit: verify, search and export the audit trail; print its
// checkpoint and public key. Every read of the trail is itself audited.

#include <fstream>
#include <iostream>

#include "audit/dicom_message.h"
#include "cli/commands.h"
#include "audit/audit_store.h"
#include "bastion/crypto/keyring.h"
#include "server/config.h"

namespace bastion::cli {
namespace {

struct Options {
  std::string config = "/var/lib/bastion/bastion.toml";
  std::string checkpoint_file, public_key;
  std::string patient_id, user, node, study, action, outcome, source, since, until;
  int last_days = 0;
  size_t limit = 1000;
  std::string format = "table";
  int64_t after_seq = 0;
};

// What these commands need: the config, the keyring and the trail (not the
// index or the identity service, which cost time to open).
struct Trail {
  server::Config config;
  std::unique_ptr<Keyring> keyring;
  std::unique_ptr<audit::AuditStore> audit;
};

StatusOr<Trail> openTrail(const std::string& config_path) {
  Trail t;
  ASSIGN_OR_RETURN(t.config, server::loadConfig(config_path));
  ASSIGN_OR_RETURN(t.keyring, loadFileKeyring(t.config.key_file, Random::system()));
  ASSIGN_OR_RETURN(t.audit, audit::AuditStore::open(t.config.auditPath(), *t.keyring, Random::system(),
                                                    Clock::system(), t.config.audit_options));
  return t;
}

StatusOr<std::chrono::system_clock::time_point> parseTime(const std::string& s) {
  auto t = parseIsoTime(s);
  if (!t) return invalidArgument("bad time '" + s + "' (want 2026-11-25, 2026-11-25T10:00:00Z or +hh:mm)");
  return *t;
}

void auditRead(Trail& a, const std::string& what, const audit::AuditFilter& f, size_t count) {
  AuditEvent e = systemEvent(Clock::system().now(), "bastion-cli", "audit-read", "success", what,
                             static_cast<uint32_t>(count));
  e.user = operatorName();
  e.source_address = "local";
  e.patient_id = f.patient_id;  // sealed like every patient ID in the trail
  std::string filter;
  for (const auto& [k, v] : {std::pair<const char*, const std::string*>{"user", &f.user}, {"node", &f.actor},
                             {"study", &f.study}, {"action", &f.action}, {"outcome", &f.outcome}})
    if (!v->empty()) filter += std::string(filter.empty() ? "" : " ") + k + "=" + *v;
  if (!filter.empty()) e.detail += " (" + filter + ")";
  if (Status s = a.audit->append(e); !s.ok()) std::cerr << "audit: cannot record this read: " << s.toString() << "\n";
}

StatusOr<audit::AuditFilter> filterOf(const Options& o) {
  audit::AuditFilter f;
  f.patient_id = o.patient_id;
  f.user = o.user;
  f.actor = o.node;
  f.study = o.study;
  f.action = o.action;
  f.outcome = o.outcome;
  f.source = o.source;
  f.after_seq = o.after_seq;
  f.limit = o.limit;
  if (!o.since.empty()) {
    ASSIGN_OR_RETURN(f.since, parseTime(o.since));
  }
  if (!o.until.empty()) {
    ASSIGN_OR_RETURN(f.until, parseTime(o.until));
  }
  if (o.last_days > 0) f.since = std::chrono::system_clock::now() - std::chrono::hours(24 * o.last_days);
  return f;
}

// Verification reads the store read-only and needs only the public key.
// Without --public-key the archive's key is derived from the KEK, and the
// verification is recorded in the trail afterwards (with --public-key, e.g.
// an auditor's copy on another machine, nothing is written).
int verify(const Options& o) {
  auto cfg = server::loadConfig(o.config);
  if (!cfg.ok()) {
    std::cerr << "audit verify: " << cfg.status().toString() << "\n";
    return 2;
  }
  audit::PublicKey key{};
  std::optional<audit::AuditKeys> keys;
  if (!o.public_key.empty()) {
    Bytes k;
    if (!fromHex(o.public_key, k) || k.size() != key.size()) {
      std::cerr << "audit verify: --public-key wants 64 hex digits\n";
      return 2;
    }
    std::copy(k.begin(), k.end(), key.begin());
  } else {
    auto ring = loadFileKeyring(cfg->key_file, Random::system());
    if (!ring.ok()) {
      std::cerr << "audit verify: " << ring.status().toString() << "\n";
      return 2;
    }
    keys = audit::AuditKeys::derive(**ring);
    key = keys->sign_public;
  }
  std::optional<audit::Checkpoint> exported;
  if (!o.checkpoint_file.empty()) {
    std::ifstream in(o.checkpoint_file);
    std::string line, last;
    while (std::getline(in, line))
      if (!line.empty()) last = line;
    auto cp = audit::Checkpoint::parse(last);
    if (!cp.ok()) {
      std::cerr << "audit verify: " << o.checkpoint_file << ": " << cp.status().message() << "\n";
      return 2;
    }
    exported = *cp;
  }
  auto r = audit::verifyAuditStore(cfg->auditPath(), key, exported, cfg->audit_options.checkpoint_every,
                                   keys ? &*keys : nullptr);
  if (!r.ok()) {
    std::cerr << "audit verify: " << r.status().toString() << "\n";
    return 2;
  }
  std::string outcome;
  if (!r->ok) {
    outcome = "failed at record " + std::to_string(r->bad_seq) + ": " + r->problem;
    std::cout << "audit verify: FAILED at record " << r->bad_seq << ": " << r->problem << "\n";
  } else {
    outcome = "ok, " + std::to_string(r->records) + " records";
    std::cout << "audit verify: OK, " << r->records << " record(s), " << r->checkpoints << " signed checkpoint(s), "
              << r->unsigned_tail << " record(s) after the last checkpoint"
              << (exported ? ", exported checkpoint at " + std::to_string(exported->seq) + " matches" : "") << "\n";
  }
  if (o.public_key.empty()) {
    auto trail = openTrail(o.config);
    if (trail.ok()) auditRead(*trail, "verify: " + outcome, {}, static_cast<size_t>(r->records));
    else std::cerr << "audit verify: cannot record this verification: " << trail.status().toString() << "\n";
  }
  return r->ok ? 0 : 1;
}

int search(Trail& a, const Options& o, bool exporting) {
  auto f = filterOf(o);
  if (!f.ok()) {
    std::cerr << "audit: " << f.status().message() << "\n";
    return 2;
  }
  const audit::AuditSource src = a.config.auditSource();
  size_t count = 0;
  // In pages, so that an export of millions of records runs in bounded memory.
  auto emit = [&](const audit::AuditEntry& e) {
    ++count;
    if (o.format == "json") {
      std::cout << audit::plainJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else if (o.format == "fhir") {
      std::cout << audit::fhirAuditEvent(e, src).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    } else if (o.format == "dicom") {
      std::cout << audit::dicomAuditXml(e, src) << "\n";
    } else {
      const auto& v = e.event;
      std::cout << e.seq << "\t" << formatUtc(v.time) << "\t" << v.action << "\t" << v.outcome << "\t"
                << (v.user.empty() ? "-" : v.user) << "\t" << (v.actor_ae.empty() ? "-" : v.actor_ae) << "\t"
                << (v.source_address.empty() ? "-" : v.source_address) << "\t"
                << (v.patient_id.empty() ? "-" : v.patient_id) << "\t" << (v.study_uid.empty() ? "-" : v.study_uid)
                << "\t" << v.instance_count << "\t" << v.rule << "\t" << v.detail << "\n";
    }
    return true;
  };
  const size_t wanted = f->limit;
  Status s;
  while (count < wanted) {
    audit::AuditFilter page = *f;
    page.limit = std::min<size_t>(wanted - count, 10000);
    size_t got = 0;
    s = a.audit->search(page, [&](const audit::AuditEntry& e) {
      ++got;
      f->after_seq = e.seq;
      return emit(e);
    });
    if (!s.ok() || got < page.limit) break;
  }
  if (!s.ok()) {
    std::cerr << "audit: " << s.toString() << "\n";
    return 2;
  }
  auditRead(a, std::string(exporting ? "export " : "search ") + o.format, *f, count);
  return 0;
}

int run(const std::string& name, const Options& o) {
  if (name == "verify") return verify(o);
  auto trail = openTrail(o.config);
  if (!trail.ok()) {
    std::cerr << "audit: " << trail.status().toString() << "\n";
    return 2;
  }
  Trail& a = *trail;
  if (name == "search") return search(a, o, false);
  if (name == "export") return search(a, o, true);
  if (name == "public-key") {
    std::cout << toHex(a.audit->keys().sign_public) << "\n";
    return 0;
  }
  auto cp = a.audit->checkpoint();  // "checkpoint"
  if (!cp.ok()) {
    std::cerr << "audit checkpoint: " << cp.status().toString() << "\n";
    return 2;
  }
  std::cout << cp->toLine() << "\n";
  return 0;
}

}  // namespace

void addAudit(CLI::App& app, Action& action) {
  auto* audit = app.add_subcommand("audit", "Verify, search and export the audit trail");
  audit->require_subcommand(1);
  auto add = [&](const char* name, const char* help) {
    auto o = std::make_shared<Options>();
    auto* c = audit->add_subcommand(name, help);
    c->add_option("--config", o->config, "Path to bastion.toml");
    c->callback([&action, o, n = std::string(name)] { action = [o, n] { return run(n, *o); }; });
    return std::make_pair(c, o);
  };
  auto [v, vo] = add("verify", "Prove the hash chain and every signed checkpoint; exit 1 at the first bad record");
  v->add_option("--checkpoint", vo->checkpoint_file, "File whose last line is a checkpoint kept elsewhere (truncation)");
  v->add_option("--public-key", vo->public_key, "Verify with this Ed25519 public key (hex) instead of the archive's");
  for (const char* name : {"search", "export"}) {
    auto [c, o] = add(name, std::string(name) == std::string("search")
                                ? "Records by patient, user, node, study, action, outcome, time"
                                : "Records as JSON lines, FHIR AuditEvent or DICOM audit messages");
    c->add_option("--patient-id", o->patient_id, "Patient ID (matched by keyed token)");
    c->add_option("--user", o->user, "User name");
    c->add_option("--node", o->node, "Node AE title (or CLI actor)");
    c->add_option("--study", o->study, "Study Instance UID");
    c->add_option("--action", o->action, "Action, e.g. store, find, get, move, wado, login");
    c->add_option("--outcome", o->outcome, "success, denied or failure");
    c->add_option("--source", o->source, "Source address");
    c->add_option("--since", o->since, "From this time (2026-11-25 or 2026-11-25T10:00:00Z)");
    c->add_option("--until", o->until, "Before this time");
    c->add_option("--last-days", o->last_days, "Only the last N days");
    c->add_option("--after", o->after_seq, "Only records after this position");
    c->add_option("--limit", o->limit, "At most this many records")->check(CLI::Range(1, 100000000));
    o->format = std::string(name) == "export" ? "json" : "table";
    c->add_option("--format", o->format, "table, json, fhir or dicom")
        ->check(CLI::IsMember({"table", "json", "fhir", "dicom"}));
  }
  add("checkpoint", "Sign the current head and print the checkpoint line (keep it outside the archive)");
  add("public-key", "Print the audit trail's Ed25519 public key (hex)");
}

}  // namespace bastion::cli
