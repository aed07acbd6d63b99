//go:build tools

// Package tools pins the operators' API types whose CRDs the manifests in deploy/k8s/ha
// use: controller-gen (a tool of this module) generates each CRD from these Go types,
// as the operators generate theirs, and scripts/check-k8s turns them into JSON schemas
// for kubeconform. go.sum holds every module's hash.
package tools

import (
	// CloudNativePG: Cluster (and Pooler, Backup, ...), postgresql.cnpg.io/v1.
	_ "github.com/cloudnative-pg/cloudnative-pg/api/v1"
	// MongoDB's Community Operator: MongoDBCommunity, mongodbcommunity.mongodb.com/v1,
	// the CRD MongoDB Controllers for Kubernetes reconciles too.
	_ "github.com/mongodb/mongodb-kubernetes-operator/api/v1"
)
