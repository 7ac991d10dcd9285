// bastion import PATH: loads DICOM files through the same store path as C-STORE.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "server/composition.h"
#include "storage/atomic_file.h"

namespace bastion::cli {
namespace {

int import(const std::string& config_path, const std::string& root, const std::string& site) {
  auto archive = server::openArchive(config_path);
  if (!archive.ok()) {
    std::cerr << "import: " << archive.status().toString() << "\n";
    return 2;
  }
  const server::Config* cfg = &(*archive)->config;
  std::vector<std::string> files;
  std::error_code ec;
  if (std::filesystem::is_regular_file(root, ec)) {
    files.push_back(root);
  } else {
    // Symlinks are not followed: an import folder cannot reach outside itself.
    for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file() && !it->is_symlink()) files.push_back(it->path().string());
  }
  if (ec) {
    std::cerr << "import: cannot read " << root << ": " << ec.message() << "\n";
    return 2;
  }
  // The operator at the server's console acts as a local node of `site`.
  CallContext ctx{"bastion-import", "local", "", {}};
  ctx.principal.kind = Principal::Kind::kNode;
  ctx.principal.name = "bastion-import";
  ctx.principal.auth_method = "local";
  ctx.principal.permissions = kPermStore;
  ctx.principal.site = site;
  const bool tty = ::isatty(STDERR_FILENO);
  uint64_t stored = 0, already = 0, failed = 0, done = 0;
  for (const auto& f : files) {
    auto bytes = storage::readFile(f, cfg->limits.max_object_size + (1 << 20));
    StatusOr<PutResult> r = bytes.ok() ? (*archive)->store->storeFile(ctx, *bytes) : StatusOr<PutResult>(bytes.status());
    if (!r.ok()) {
      ++failed;
      std::cerr << (tty ? "\r" : "") << "skipped " << f << ": " << r.status().toString() << "\n";
    } else if (*r == PutResult::kInserted) {
      ++stored;
    } else {
      ++already;
    }
    ++done;
    if (tty) {
      const int width = 40, fill = static_cast<int>(width * done / files.size());
      std::cerr << "\r[" << std::string(fill, '#') << std::string(width - fill, ' ') << "] " << done << "/"
                << files.size() << std::flush;
    }
  }
  if (tty) std::cerr << "\n";
  std::cout << "imported " << stored << ", already present " << already << ", failed " << failed << "\n";
  return failed ? 1 : 0;
}

}  // namespace

void addImport(CLI::App& app, Action& action) {
  auto path = std::make_shared<std::string>("/var/lib/bastion/bastion.toml");
  auto root = std::make_shared<std::string>();
  auto site = std::make_shared<std::string>("main");
  auto* cmd = app.add_subcommand("import", "Import a folder of DICOM files");
  cmd->add_option("--config", *path, "Path to bastion.toml");
  cmd->add_option("path", *root, "File or folder to import")->required();
  cmd->add_option("--site", *site, "Site the imported studies belong to");
  cmd->callback([&action, path, root, site] { action = [path, root, site] { return import(*path, *root, *site); }; });
}

}  // namespace bastion::cli
