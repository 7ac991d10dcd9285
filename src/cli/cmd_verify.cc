// bastion verify: re-reads and authenticates every stored object.
#include <unistd.h>

#include <iostream>

#include "bastion/service/verify.h"
#include "cli/commands.h"
#include "server/composition.h"

namespace bastion::cli {
namespace {

int verify(const std::string& config_path) {
  auto archive = server::openArchive(config_path);
  if (!archive.ok()) {
    std::cerr << "verify: " << archive.status().toString() << "\n";
    return 2;
  }
  server::Archive& a = **archive;
  const server::Config* cfg = &a.config;
  const bool tty = ::isatty(STDERR_FILENO);
  auto report = verifyArchive(*a.index, *a.blobs, cfg->limits.max_object_size + (1 << 20), [&](uint64_t d, uint64_t t) {
    if (tty && (d % 100 == 0 || d == t)) std::cerr << "\rverified " << d << "/" << t << std::flush;
  });
  if (tty) std::cerr << "\n";
  if (!report.ok()) {
    std::cerr << "verify: " << report.status().toString() << "\n";
    return 2;
  }
  for (const auto& p : report->problems)
    std::cout << p.kind << "\tblob " << p.blob_id << (p.sop_uid.empty() ? "" : "\tsop " + p.sop_uid) << "\t" << p.detail
              << "\n";
  std::cout << "checked " << report->checked << " instance(s), " << report->problems.size() << " problem(s)\n";
  (void)a.audit->append(systemEvent(Clock::system().now(), "bastion-verify", "verify",
                                    report->clean() ? "success" : "failure",
                                    std::to_string(report->problems.size()) + " problem(s)",
                                    static_cast<uint32_t>(report->checked)));
  return report->clean() ? 0 : 1;
}

}  // namespace

void addVerify(CLI::App& app, Action& action) {
  auto path = std::make_shared<std::string>("/var/lib/bastion/bastion.toml");
  auto* cmd = app.add_subcommand("verify", "Check every stored object's integrity");
  cmd->add_option("--config", *path, "Path to bastion.toml");
  cmd->callback([&action, path] { action = [path] { return verify(*path); }; });
}

}  // namespace bastion::cli
