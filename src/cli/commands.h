// One function per subcommand; each registers its options on `app` and
// returns the action to run once parsing succeeded (exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace bastion::cli {

using Action = std::function<int()>;
void addInit(CLI::App& app, Action& action);
void addNode(CLI::App& app, Action& action);
void addCodecWorker(CLI::App& app, Action& action);
void addServe(CLI::App& app, Action& action);
void addVerify(CLI::App& app, Action& action);
void addImport(CLI::App& app, Action& action);
void addUser(CLI::App& app, Action& action);    // user, token, role
void addAccess(CLI::App& app, Action& action);  // grant, break-glass
void addAudit(CLI::App& app, Action& action);

// The operating-system user running the command ("os:<name>"), for audit
// records: from the real uid, not the environment (cmd_user.cc).
std::string operatorName();

}  // namespace bastion::cli
