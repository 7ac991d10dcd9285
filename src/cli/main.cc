// bastion: the secure PACS. Subcommands: init, node, serve, verify, import.
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Bastion: a secure, fast PACS"};
  app.require_subcommand(1);
  bastion::cli::Action action;
  bastion::cli::addInit(app, action);
  bastion::cli::addNode(app, action);
  bastion::cli::addServe(app, action);
  bastion::cli::addVerify(app, action);
  bastion::cli::addImport(app, action);
  bastion::cli::addUser(app, action);
  bastion::cli::addAccess(app, action);
  bastion::cli::addAudit(app, action);
  bastion::cli::addCodecWorker(app, action);
  CLI11_PARSE(app, argc, argv);
  return action ? action() : 2;
}
