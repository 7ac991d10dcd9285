#include "bastion/storage/blob_store.h"

namespace bastion {

StatusOr<Bytes> readAll(BlobReader& reader, uint64_t max_size) {
  const uint64_t size = reader.size();
  if (size > max_size) return resourceExhausted("blob larger than the allowed maximum");
  Bytes out(static_cast<size_t>(size));
  uint64_t done = 0;
  while (done < size) {
    ASSIGN_OR_RETURN(size_t n, reader.read(done, std::span<uint8_t>(out).subspan(done)));
    if (n == 0) return dataLoss("blob shorter than its recorded size");
    done += n;
  }
  return out;
}

StatusOr<std::string> writeBlob(BlobStore& store, ByteView data) {
  ASSIGN_OR_RETURN(auto writer, store.create());
  RETURN_IF_ERROR(writer->append(data));
  RETURN_IF_ERROR(writer->commit());
  return writer->id();
}

}  // namespace bastion
