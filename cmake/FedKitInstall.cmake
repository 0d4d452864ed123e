# Install rules: the device library fedkit::client with its dependency closure, the headers an app
# needs to include client/federated_client.h (plus models/tensor_examples.h and
# models/torchscript_model.h), and a CMake package (find_package(FedKit CONFIG)).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(FEDKIT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/FedKit)

# fedkit::client and every FedKit library it links, PUBLIC or PRIVATE (static libraries carry their
# private dependencies to the app's link line). fedkit_compression is listed ahead of the client's
# use of it (update compression on the device), so that linking it needs no change here.
set(FEDKIT_EXPORTED_LIBRARIES
  fedkit_core fedkit_data fedkit_models fedkit_artifacts fedkit_artifact_policy fedkit_privacy fedkit_secagg fedkit_proto
  fedkit_compression fedkit_model_stream fedkit_training fedkit_client)
if(TARGET fedkit_tsan_absl_annotations)
  list(APPEND FEDKIT_EXPORTED_LIBRARIES fedkit_tsan_absl_annotations)
endif()
# A sanitizer build's libraries are instrumented: whatever links them needs the sanitizer's
# runtime, so the installed package says so (inside the build, the top-level link options do).
if(FEDKIT_SANITIZE)
  target_link_options(fedkit_core INTERFACE
    "$<INSTALL_INTERFACE:-fsanitize=${FEDKIT_SANITIZE}>")
endif()
foreach(target ${FEDKIT_EXPORTED_LIBRARIES})
  string(REGEX REPLACE "^fedkit_" "" export_name ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
endforeach()

install(TARGETS ${FEDKIT_EXPORTED_LIBRARIES}
  EXPORT FedKitTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The binaries, if built (a build of only the libraries installs without them).
install(TARGETS fedkit-coordinator fedkit-client fedkit-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  OPTIONAL)
# fedkit-plot (scripts/plot.py), which fedkit-sim --plot looks for beside itself.
install(PROGRAMS ${CMAKE_BINARY_DIR}/bin/fedkit-plot DESTINATION ${CMAKE_INSTALL_BINDIR} OPTIONAL)
# fedkit-export (models/python/export.py) and the make_model.py it imports, which it looks for in
# ../share/fedkit/ relative to itself.
install(PROGRAMS ${CMAKE_BINARY_DIR}/bin/fedkit-export DESTINATION ${CMAKE_INSTALL_BINDIR} OPTIONAL)
install(FILES ${CMAKE_BINARY_DIR}/share/fedkit/make_model.py DESTINATION ${CMAKE_INSTALL_DATADIR}/fedkit
  OPTIONAL)

# The headers reachable from client/federated_client.h, models/tensor_examples.h and
# models/torchscript_model.h (FedKit's own; absl, LibTorch and protobuf come from their packages).
set(FEDKIT_PUBLIC_HEADERS
  artifacts/signing.h
  client/artifact_cache.h client/artifact_policy.h client/coordinator_channel.h client/federated_client.h
  client/global_model_store.h client/local_trainer.h client/model_source.h client/round_telemetry.h
  compression/spec.h compression/update_codec.h
  core/parameter_layout.h
  data/examples.h
  models/model.h models/tensor_examples.h models/torch_status.h models/torchscript_model.h)
foreach(header ${FEDKIT_PUBLIC_HEADERS})
  get_filename_component(dir ${header} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/proto/gen/fedkit/v1/coordinator.pb.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/fedkit/v1)

install(EXPORT FedKitTargets NAMESPACE fedkit:: DESTINATION ${FEDKIT_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/FedKitConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/FedKitConfig.cmake INSTALL_DESTINATION ${FEDKIT_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/FedKitConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/FedKitConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/FedKitConfigVersion.cmake
        DESTINATION ${FEDKIT_INSTALL_CMAKEDIR})
