// bastion serve: runs the DICOM listeners until SIGINT/SIGTERM.
#include <malloc.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "dicom/dcmtk/dimse_server.h"
#include "dicom/dcmtk/codec_worker.h"
#include "server/composition.h"
#include "web/dicomweb/dicomweb_service.h"
#include "web/http/server.h"

namespace bastion::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void onSignal(int) { g_stop = 1; }

// Objects up to 16 MiB pass through several buffers per store (the received
// part, the ciphertext, the pack record). By default glibc maps and unmaps
// each one (its threshold adapts only up to what was last freed) and trims
// freed heap tops: measured, page faults and unmapping took ~27 % of the
// server's CPU in 512x512 STOW-RS. Kept in the heap, freed buffers are reused.
void keepLargeBuffers() {
  (void)::mallopt(M_MMAP_THRESHOLD, 16 << 20);
  (void)::mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int serve(const std::string& config_path) {
  keepLargeBuffers();
  auto archive = server::openArchive(config_path);
  if (!archive.ok()) {
    std::cerr << "serve: " << archive.status().toString() << "\n";
    return 1;
  }
  server::Archive& a = **archive;
  const server::Config* cfg = &a.config;
  auto swept = server::removeUnacknowledgedBlobs(a);
  if (!swept.ok()) {
    std::cerr << "serve: " << swept.status().toString() << "\n";
    return 1;
  }
  if (!*swept)
    std::cerr << "serve: another process has this archive open (bastion import?): objects of interrupted stores, "
                 "if any, are left for a later start\n";
  else if (**swept)
    std::cerr << "serve: removed " << **swept << " unacknowledged blob(s) from an interrupted run\n";

  dicom::ServerConfig sc;
  sc.assoc = {cfg->ae_title, cfg->tls_ca, cfg->tls_cert, cfg->tls_key, cfg->idle_timeout_s, cfg->artim_timeout_s,
              cfg->max_pdu, cfg->limits};
  sc.tls_address = cfg->tls_listen.address;
  sc.tls_port = cfg->tls_listen.port;
  sc.plain_enabled = cfg->plain_enabled;
  sc.plain_address = cfg->plain_listen.address;
  sc.plain_port = cfg->plain_listen.port;
  sc.plain_allow = cfg->plain_allow;
  sc.max_associations = cfg->max_associations;
  sc.max_associations_per_node = cfg->max_associations_per_node;
  sc.throttle = {cfg->max_failed_associations, std::chrono::seconds(cfg->failure_window_s),
                 std::chrono::seconds(cfg->block_s)};
  dicom::Services services{*a.store, *a.query, *a.retrieve, *a.index, *a.auth, *a.audit, Clock::system()};
  dicom::DimseServer server(sc, services);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  Status s = server.start();
  if (!s.ok()) {
    std::cerr << "serve: " << s.toString() << "\n";
    return 1;
  }
  // The HTTPS API, if configured: the same services, index and Policy.
  // Compressed images are decoded only in sandboxed codec workers (R20):
  // this binary, started again as `bastion codec-worker`.
  // /proc/self/exe, not its target: still this binary after an in-place upgrade.
  isolation::WorkerPool codecs({"/proc/self/exe",
                                {"codec-worker", "--memory-mb", std::to_string(cfg->codec_memory_mb)},
                                static_cast<size_t>(cfg->codec_workers),
                                std::chrono::seconds(cfg->codec_timeout_s)});
  dicom::IsolatedRenderer renderer(codecs);
  web::DicomWebService dicomweb({cfg->https_base_url, 1000, cfg->limits.max_object_size, 10000, true,
                                 cfg->https_user_rate_per_s, cfg->https_user_rate_burst},
                                *a.auth, *a.store, *a.query, *a.retrieve, *a.remove, *a.audit, Clock::system(),
                                renderer);
  dicomweb.setAuditTrail(a.audit.get());
  web::HttpsConfig hc;
  hc.address = cfg->https_listen.address;
  hc.port = cfg->https_listen.port;
  hc.cert = cfg->tls_cert;
  hc.key = cfg->tls_key;
  hc.max_connections = cfg->https_max_connections;
  hc.max_body_bytes = cfg->https_max_body;
  hc.rate_per_s = cfg->https_rate_per_s;
  hc.rate_burst = cfg->https_rate_burst;
  hc.on_throttled = [&a](const std::string& peer) {
    AuditEvent e = systemEvent(Clock::system().now(), "", "throttle", "denied",
                               "HTTPS request rate over the per-source limit");
    e.source_address = peer;
    e.rule = "deny:rate-limit";
    (void)a.audit->append(e);
  };
  web::HttpsServer https(std::move(hc), [&dicomweb](web::Request& r) { return dicomweb.handle(r); });
  if (cfg->https_enabled) {
    Status hs = https.start();
    if (!hs.ok()) {
      std::cerr << "serve: " << hs.toString() << "\n";
      server.stop();
      return 1;
    }
  }
  // Audit export: one store-and-forward sender per syslog collector.
  const audit::AuditSource source = cfg->auditSource();
  std::vector<std::unique_ptr<audit::SyslogForwarder>> forwarders;
  for (const auto& c : cfg->syslog) forwarders.push_back(std::make_unique<audit::SyslogForwarder>(*a.audit, c, source));
  for (auto& f : forwarders) f->start();
  a.audit->onCommit([&forwarders](int64_t) {
    for (auto& f : forwarders) f->wake();
  });
  (void)a.audit->append(systemEvent(Clock::system().now(), "bastion", "start", "success"));
  std::cout << "bastion: DICOM TLS on " << sc.tls_address << ":" << server.tlsPort() << " (AE " << cfg->ae_title
            << ")";
  if (sc.plain_enabled) std::cout << ", plaintext on " << sc.plain_address << ":" << server.plainPort();
  if (cfg->https_enabled) std::cout << ", HTTPS on " << cfg->https_listen.address << ":" << https.port();
  std::cout << std::endl;
  if (!cfg->port_file.empty()) {
    std::ofstream pf(cfg->port_file + ".tmp");
    pf << "tls=" << server.tlsPort() << "\nplain=" << server.plainPort() << "\nhttps=" << https.port() << "\n";
    pf.close();
    std::rename((cfg->port_file + ".tmp").c_str(), cfg->port_file.c_str());
  }
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  https.stop();
  server.stop();
  (void)a.audit->append(systemEvent(Clock::system().now(), "bastion", "stop", "success"));
  // Give collectors the last records (confirmed delivery); the rest waits
  // in the store for the next start.
  for (auto& f : forwarders) f->stop(std::chrono::seconds(5));
  a.audit->onCommit(nullptr);
  return 0;
}

}  // namespace

void addCodecWorker(CLI::App& app, Action& action) {
  auto memory_mb = std::make_shared<uint64_t>(2048);
  auto* cmd = app.add_subcommand("codec-worker", "Internal: a sandboxed decoder process started by serve");
  cmd->group("");  // not listed in --help
  cmd->add_option("--memory-mb", *memory_mb, "Address-space limit")->check(CLI::Range(64, 65536));
  cmd->callback([&action, memory_mb] { action = [memory_mb] { return dicom::runCodecWorker(*memory_mb); }; });
}

void addServe(CLI::App& app, Action& action) {
  auto path = std::make_shared<std::string>("/var/lib/bastion/bastion.toml");
  auto* cmd = app.add_subcommand("serve", "Run the archive");
  cmd->add_option("--config", *path, "Path to bastion.toml");
  cmd->callback([&action, path] { action = [path] { return serve(*path); }; });
}

}  // namespace bastion::cli
