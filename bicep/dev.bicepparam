using 'main.bicep'

// Development: the cheapest shape that still exercises every moving part. One always-ready
// EP1 instance, Developer API Management (no SLA), the smallest Azure Managed Redis without
// replication, locally redundant storage, and modest limits so a load test cannot run up a bill.
//
//   az deployment group create -g <resource-group> --parameters bicep/dev.bicepparam

param environmentName = 'dev'
param publisherEmail = readEnvironmentVariable('APIM_PUBLISHER_EMAIL', 'dipguard-dev@example.com')

// The lookup key secret: read from NEW_LOOKUP_KEY_SECRET on the first deployment and when a
// rotation starts, empty otherwise (the secret in Key Vault stays as it is). During a
// rotation, LOOKUP_KEY_SECRET_PREVIOUS_VERSION names the previous version (docs/deploy.md,
// "Rotating the lookup key secret").
param lookupKeySecret = readEnvironmentVariable('NEW_LOOKUP_KEY_SECRET', '')
param lookupKeySecretPreviousVersion = readEnvironmentVariable('LOOKUP_KEY_SECRET_PREVIOUS_VERSION', '')

param planSku = 'EP1'
param maximumElasticWorkerCount = 10
param zoneRedundant = false
param alwaysReadyInstanceCount = 1
param preWarmedInstanceCount = 1

param storageSkuName = 'Standard_LRS'
param redisSkuName = 'Balanced_B0'
param redisHighAvailability = false

// Public endpoints guarded by Entra ID, no virtual network and no private endpoints: cheap,
// and reachable from a developer's machine (docs/deploy.md, "Networks").
param privateNetworking = false

param apimSkuName = 'Developer'
param apimSkuCapacity = 1
param rateLimitCallsPerSecond = 100
param maxConcurrentCalls = 50

param maxDbQps = 50
param scaleDryRun = false

param logRetentionDays = 30
param alertEmails = []
