// Converting FedKit's ParameterLayout to and from its wire form.
#ifndef FEDKIT_PROTO_LAYOUT_CONVERSION_H_
#define FEDKIT_PROTO_LAYOUT_CONVERSION_H_

#include "core/parameter_layout.h"
#include "fedkit/v1/coordinator.pb.h"

namespace fedkit {

v1::ParameterLayout LayoutToProto(const ParameterLayout& layout);
ParameterLayout LayoutFromProto(const v1::ParameterLayout& layout);

}  // namespace fedkit

#endif  // FEDKIT_PROTO_LAYOUT_CONVERSION_H_
