// bastion init DIR: config, KEK, private CA and server certificate.
// Never overwrites an existing key, certificate or config.
#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <vector>

#include "bastion/crypto/keyring.h"
#include "cli/commands.h"
#include "server/composition.h"
#include "crypto/pki.h"
#include "server/config.h"
#include "storage/atomic_file.h"

namespace bastion::cli {
namespace {

struct InitOptions {
  std::string dir = "/var/lib/bastion";
  std::string address = "127.0.0.1";
  int port = 2762;
  std::string ae = "BASTION";
  std::vector<std::string> hostnames{"localhost"};
};

bool exists(const std::string& p) { return std::filesystem::exists(p); }

int runInit(const InitOptions& o) {
  namespace fs = std::filesystem;
  const std::string dir = fs::absolute(o.dir).lexically_normal().string();
  const std::string keys = dir + "/keys", pki = dir + "/pki", data = dir + "/data";
  for (const auto& d : {dir, keys, pki, data}) {
    Status s = storage::ensureDirectory(d);
    if (!s.ok()) {
      std::cerr << "init: " << s.toString() << "\n";
      return 1;
    }
  }
  ::chmod(keys.c_str(), 0700);
  std::vector<std::pair<std::string, std::string>> created;  // (action, what) for the audit trail
  auto report = [&created](const std::string& what, const std::string& path, const Status& s) {
    if (s.ok()) {
      std::cout << "created  " << what << ": " << path << "\n";
      created.emplace_back(what == "configuration" ? "config-create" : "key-create", what + ": " + path);
    } else if (s.code() == StatusCode::kAlreadyExists) {
      std::cout << "kept     " << what << ": " << path << "\n";
    } else {
      std::cerr << "init: " << what << ": " << s.toString() << "\n";
      return false;
    }
    return true;
  };
  server::Config c;
  c.data_dir = data;
  c.key_file = keys + "/kek.key";
  c.tls_ca = pki + "/ca.crt";
  c.tls_cert = pki + "/server.crt";
  c.tls_key = keys + "/server.key";
  c.ae_title = o.ae;
  c.tls_listen = {o.address, static_cast<uint16_t>(o.port)};
  if (!report("key-encryption key (0600)", c.key_file, createKeyFile(c.key_file, Random::system()))) return 1;
  const std::string ca_key = keys + "/ca.key";
  if (!report("private CA", c.tls_ca, crypto::createCa(ca_key, c.tls_ca, "Bastion private CA"))) return 1;
  crypto::IssueRequest req{o.ae, o.hostnames, {o.address}, true, 825};
  if (!report("server certificate", c.tls_cert, crypto::issueCertificate(ca_key, c.tls_ca, req, c.tls_key, c.tls_cert)))
    return 1;
  const std::string cfg = dir + "/bastion.toml";
  if (!report("configuration", cfg,
              exists(cfg) ? alreadyExists("") : storage::writeNewFile(cfg, asBytes(server::renderConfig(c)), 0640)))
    return 1;
  // The first administrator: a one-time password, printed once; the
  // account cannot be used before it has a password and a second factor.
  auto archive = server::openArchive(cfg);
  if (!archive.ok()) {
    std::cerr << "init: " << archive.status().toString() << "\n";
    return 1;
  }
  for (const auto& [action, what] : created) {
    AuditEvent e = systemEvent(Clock::system().now(), "bastion-init", action, "success", what);
    e.source_address = "local";
    if (Status a = (*archive)->audit->append(e); !a.ok()) {
      std::cerr << "init: audit: " << a.toString() << "\n";
      return 1;
    }
  }
  auto users = (*archive)->auth->listUsers();
  if (!users.ok()) {
    std::cerr << "init: " << users.status().toString() << "\n";
    return 1;
  }
  if (users->empty()) {
    auto otp = (*archive)->auth->addUser({"admin", {"admin"}, "main", "", {}}, "bastion-init");
    if (!otp.ok()) {
      std::cerr << "init: " << otp.status().toString() << "\n";
      return 1;
    }
    std::cout << "created  administrator: admin\n"
              << "one-time password: " << *otp << "\n"
              << "(shown once: run `bastion user enrol admin --config " << cfg
              << "` to choose a password and enrol a second factor)\n";
  } else {
    std::cout << "kept     " << users->size() << " existing account(s)\n";
  }
  std::cout << "data directory: " << data << "\n"
            << "DICOM TLS listener: " << o.address << ":" << o.port << " (AE " << o.ae << ")\n"
            << "Register nodes with: bastion node add --config " << cfg << " ...\n";
  return 0;
}

}  // namespace

void addInit(CLI::App& app, Action& action) {
  auto o = std::make_shared<InitOptions>();
  auto* cmd = app.add_subcommand("init", "Create a configuration, keys and TLS certificates");
  cmd->add_option("dir", o->dir, "Installation directory (config, keys/, pki/, data/)");
  cmd->add_option("--address", o->address, "DICOM TLS listen address");
  cmd->add_option("--port", o->port, "DICOM TLS port (0: ephemeral)")->check(CLI::Range(0, 65535));
  cmd->add_option("--ae", o->ae, "Bastion's AE title");
  cmd->add_option("--hostname", o->hostnames, "DNS names for the server certificate");
  cmd->callback([&action, o] { action = [o] { return runInit(*o); }; });
}

}  // namespace bastion::cli
