#include "common/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

namespace bastion {
namespace {

struct Item {
  int id = 0;
  int committed = 0;  // times a batch held it
};

TEST(GroupCommit, CallersQueuedBehindACommitShareTheNextOne) {
  GroupCommit<Item> group;
  std::atomic<bool> release{false};
  std::atomic<int> running{0}, overlap{0}, commits{0};
  std::vector<size_t> batch_sizes;  // written by the one committing thread
  auto commit = [&](std::vector<Item*>& batch) {
    if (running.fetch_add(1) != 0) overlap.fetch_add(1);
    batch_sizes.push_back(batch.size());
    for (Item* i : batch) ++i->committed;
    commits.fetch_add(1);
    while (!release.load()) std::this_thread::yield();  // the first commit waits for the others to queue
    running.fetch_sub(1);
  };
  constexpr int kCallers = 8;
  std::vector<Item> items(kCallers);
  std::vector<std::thread> threads;
  Item first{-1};
  std::thread leader([&] { group.submit(first, commit); });
  while (commits.load() == 0) std::this_thread::yield();  // the leader is inside its commit
  for (int i = 0; i < kCallers; ++i) {
    items[i].id = i;
    threads.emplace_back([&, i] { group.submit(items[i], commit); });
  }
  while (group.waiting() < static_cast<size_t>(kCallers)) std::this_thread::yield();  // all queued behind it
  release = true;
  leader.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlap.load(), 0);
  EXPECT_EQ(first.committed, 1);
  for (const auto& i : items) EXPECT_EQ(i.committed, 1) << i.id;
  ASSERT_EQ(batch_sizes.size(), 2u) << "the queued callers were committed in one batch";
  EXPECT_EQ(batch_sizes[0], 1u);
  EXPECT_EQ(batch_sizes[1], static_cast<size_t>(kCallers));
}

TEST(GroupCommit, EveryItemCommitsOnceAndExclusiveRunsAlone) {
  GroupCommit<Item> group(3);  // batches of at most 3
  std::atomic<int> running{0}, overlap{0}, exclusive_runs{0};
  size_t largest = 0;
  auto enter = [&] {
    if (running.fetch_add(1) != 0) overlap.fetch_add(1);
  };
  constexpr int kThreads = 6, kEach = 500;
  std::vector<std::vector<Item>> items(kThreads, std::vector<Item>(kEach));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int n = 0; n < kEach; ++n) {
        if (n % 50 == 0) {
          int r = group.exclusive([&] {
            enter();
            running.fetch_sub(1);
            return exclusive_runs.fetch_add(1) + 1;
          });
          EXPECT_GT(r, 0);
        }
        group.submit(items[t][n], [&](std::vector<Item*>& batch) {
          enter();
          largest = std::max(largest, batch.size());
          for (Item* i : batch) ++i->committed;
          running.fetch_sub(1);
        });
        EXPECT_EQ(items[t][n].committed, 1);  // committed before submit returned
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlap.load(), 0);
  EXPECT_EQ(exclusive_runs.load(), kThreads * kEach / 50);
  EXPECT_LE(largest, 3u);
  for (const auto& v : items)
    for (const auto& i : v) EXPECT_EQ(i.committed, 1);
}

}  // namespace
}  // namespace bastion
