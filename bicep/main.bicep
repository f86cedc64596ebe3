metadata name = 'dipguard'
metadata description = 'Genesys Cloud IVR data dips on Azure Functions Elastic Premium: API Management in front (rate and concurrency limits), Azure Managed Redis for the shed valve and cache, Table Storage for customers, an Entra app registration through which only API Management\'s identity reaches the app, Application Insights with a workbook and alerts.'

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

@description('Required. Short environment name (dev, test, prod...): lowercase letters, digits and hyphens, used in resource names. azd passes AZURE_ENV_NAME.')
@minLength(2)
@maxLength(12)
param environmentName string

@description('Optional. Region for every resource.')
param location string = resourceGroup().location

@description('Optional. Tags added to every resource.')
param tags object = {}

@description('Required. Email address for API Management system notifications.')
param publisherEmail string

@description('Optional. Publisher name shown by API Management.')
param publisherName string = 'dipguard'

// ---------------------------------------------------------------------------------------------
// Elastic Premium plan and instances
// ---------------------------------------------------------------------------------------------

@description('Optional. Elastic Premium size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Optional. Python worker processes on each instance (FUNCTIONS_WORKER_PROCESS_COUNT). 0 means one for each vCPU of planSku: 1 on EP1, 2 on EP2, 4 on EP3.')
@minValue(0)
@maxValue(10)
param workerProcessCount int = 0

@description('Optional. Read budget of each instance while Redis is unreachable, about maxDbQps divided by the instances; split between its worker processes (LOCAL_DB_QPS is per process).')
@minValue(1)
@maxValue(100000)
param localDbQpsPerInstance int = 20

@description('Optional. Plan maximum burst (maximumElasticWorkerCount): the ceiling for a 10x spike. At most maxBurstLimit; the deployment fails early otherwise.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

// Linux Elastic Premium allows a plan maximum burst of 20 in many regions and 100 in others
// (learn.microsoft.com/azure/azure-functions/functions-premium-plan, region table). 20 is
// safe everywhere; in a region whose limit is 100, raise this and then the bursts.
@description('Optional. The region\'s Linux Elastic Premium maximum burst: 20 in most regions, 100 in some (functions-premium-plan region table). Caps maximumElasticWorkerCount, and the app caps every schedule maxBurst with it (SCALE_MAX_BURST_LIMIT).')
@minValue(1)
@maxValue(100)
param maxBurstLimit int = 20

@description('Optional. Zone-redundant plan. Requires alwaysReadyInstanceCount of at least 3; the deployment fails early otherwise.')
param zoneRedundant bool = false

@description('Optional. Always-ready instances (minimumElasticInstanceCount). The scale_schedule timer moves it through the day.')
@minValue(1)
@maxValue(20)
param alwaysReadyInstanceCount int = 1

@description('Optional. Pre-warmed instances (preWarmedInstanceCount) kept ahead of each scale-out step: 0 to 10, the bounds of Azure\'s published types for Microsoft.Web/sites/config (API 2024-11-01).')
@minValue(0)
@maxValue(10)
param preWarmedInstanceCount int = 1

@description('Optional. Per-app scale-out limit (functionAppScaleLimit); 0 means up to the plan maximum burst.')
@minValue(0)
@maxValue(100)
param functionAppScaleLimit int = 0

// ---------------------------------------------------------------------------------------------
// Data services
// ---------------------------------------------------------------------------------------------

@description('Optional. Replication of both storage accounts.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Optional. Table of customers and phone numbers (CUSTOMER_TABLE).')
param customerTableName string = 'customers'

@description('Optional. Table of operator surges (SURGE_TABLE).')
param surgeTableName string = 'surges'

// Total memory of each SKU, of which about 20% is reserved for replication and other
// non-cache work: learn.microsoft.com/azure/redis/overview ("Size (GB)" by tier),
// learn.microsoft.com/azure/redis/migrate/migrate-overview (SKU to size, e.g. C3 6 GB ->
// Balanced B5, 0% more memory) and learn.microsoft.com/azure/redis/architecture#reserved-memory.
// The per-key figures in the description are measured with python -m bench.memory on
// redis-server 7.0 (docs/readmodel.md): this description is the one place in bicep/ that
// quotes them.
@description('''Optional. Azure Managed Redis SKU, sized for the warm read model.
Measured: about 300 bytes per lookup key x 2.45 lookup keys per customer (its id and one or two phone numbers) = about 750 bytes per customer, plus the Bloom filters (4 MB up to 400k customers, then 10 to 20 bytes per customer); 100k customers take about 80 MB, 1M about 760 MB, 5M about 3.8 GB.
Choose a SKU with at least twice that (about 20% of a SKU's memory is reserved, and the table grows): 100k customers Balanced_B0, 1M Balanced_B3, 5M Balanced_B10.
Memory per SKU: Balanced_B0 0.5 GB, Balanced_B1 1 GB, Balanced_B3 3 GB, Balanced_B5 6 GB, Balanced_B10 12 GB, Balanced_B20 24 GB, Balanced_B50 60 GB; MemoryOptimized_M10 12 GB, MemoryOptimized_M20 24 GB and MemoryOptimized_M50 60 GB cost less for the same memory, with half the vCPUs.
Too small a SKU costs database reads, not wrong answers: under memory pressure Redis evicts cached answers and never the valve or the read model's proof of absence (see modules/redis.bicep).''')
param redisSkuName string = 'Balanced_B1'

@description('Optional. Redis high availability (replication). Off only for dev.')
param redisHighAvailability bool = true

@description('Optional. Redis clustering policy; see modules/redis.bicep. Fixed once the database exists.')
@allowed([
  'EnterpriseCluster'
  'OSSCluster'
])
param redisClusteringPolicy string = 'EnterpriseCluster'

// ---------------------------------------------------------------------------------------------
// API Management
// ---------------------------------------------------------------------------------------------

// Not offered: Consumption (no rate-limit-by-key), BasicV2 (no static outbound address and
// no outbound virtual network integration, so nothing can admit it alone to the app), and
// PremiumV2 (not in API version 2024-05-01's SKU list, nor in azure-mgmt-apimanagement
// 5.0.0's that tests/support/bicep_model_check.py checks with). See modules/apim.bicep.
@description('Optional. API Management tier: Developer, Basic, Standard or Premium (the app admits their static addresses), or StandardV2 (the app admits its integration subnet; see apimSubnetAddressPrefix).')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'StandardV2'
])
param apimSkuName string = 'Developer'

@description('Optional. API Management scale units.')
@minValue(1)
@maxValue(12)
param apimSkuCapacity int = 1

@description('Optional. URL suffix of the lookup API on the gateway.')
param apiPath string = 'dip'

@description('Optional. Calls per second per client application (the Entra token\'s azp) before API Management answers 429 (rate-limit-by-key).')
@minValue(1)
param rateLimitCallsPerSecond int = 1000

@description('Optional. Calls per second per source address before API Management answers 429 (rate-limit-by-key, counted before the token check). Genesys calls from a few egress addresses, so keep it at or above Genesys\'s whole peak.')
@minValue(1)
param rateLimitPerIpCallsPerSecond int = 1000

@description('Optional. Genesys Cloud\'s egress ranges in CIDR form (GET /api/v2/ipranges of your Genesys region) for an ip-filter on the lookup API. Defence in depth, not authentication: Genesys changes these ranges, so refresh them with each change Genesys announces, or leave the list empty (no filter).')
param genesysIpRanges array = []

@description('Optional. Application (client) ID of an existing Entra registration for the lookup API Genesys calls (with an app role Dip.Lookup assigned to Genesys\'s service principal; docs/deploy.md, "The Genesys Cloud client registration"). Empty: the deployment creates the registration, its role and the assignment through the Microsoft Graph Bicep extension. When given, genesysClientAppId is required.')
param lookupApiClientId string = ''

@description('Optional. Application (client) ID of an existing Entra registration that stands for Genesys Cloud. Empty: the deployment creates one (unless lookupApiClientId is given, which needs this too).')
param genesysClientAppId string = ''

@description('Optional. Calls in flight to the function app per gateway before API Management answers 429 (limit-concurrency).')
@minValue(1)
param maxConcurrentCalls int = 200

@description('Optional. CIDR ranges operators call the operator app from (the surge endpoints). Empty: any address, and App Service Authentication with the Surge.Operate app role alone decides who gets in. The lookup app admits API Management only, whatever this says.')
param operatorIpRanges array = []

@description('Optional. Object IDs of users, groups or service principals to assign the operators\' app role (Surge.Operate) on the operators\' app registration the deployment creates. Empty: assign it in Entra ID instead (docs/deploy.md, "Security").')
param surgeOperatorObjectIds array = []

@description('Optional. Application (client) ID of an existing Entra app registration for the operator app, defining the Surge.Operate app role (docs/deploy.md, "Security"). Empty: the deployment creates one through the Microsoft Graph Bicep extension.')
param operatorEntraAppClientId string = ''

@description('Optional. StandardV2 only: address range of the virtual network and subnet the gateway calls the function app from. At least a /27; /24 lets the gateway scale.')
param apimSubnetAddressPrefix string = '10.90.0.0/24'

// ---------------------------------------------------------------------------------------------
// Private data plane
// ---------------------------------------------------------------------------------------------

@description('Optional. Private data plane: both function apps integrate with a virtual network, host storage (blob, file, queue, table), customer storage (table), Redis and Key Vault are reached through private endpoints with private DNS zones and their public network access is disabled, and the SCM (Kudu) site admits deployerIpRanges only. Off: everything stays on public endpoints guarded by Entra ID (a cheap dev deployment). docs/deploy.md, "Networks".')
param privateNetworking bool = false

@description('Optional. With privateNetworking: address range of the subnet both function apps integrate with (one plan, one subnet): at least a /25, 100 addresses, for an Elastic Premium plan.')
param appSubnetAddressPrefix string = '10.90.1.0/24'

@description('Optional. With privateNetworking: address range of the private endpoint subnet (eleven endpoints: four on each host account, the customer table, Redis and Key Vault).')
param privateEndpointSubnetAddressPrefix string = '10.90.2.0/26'

@description('Optional. CIDR ranges deployments (azd deploy, func publish) run from: the only addresses the SCM (Kudu) site admits when privateNetworking is on or this list is not empty. Required with privateNetworking. A GitHub-hosted runner has no fixed address; deploy from a runner with one.')
param deployerIpRanges array = []

@description('Optional. Application (client) ID of an existing Entra app registration that stands for the function app (a registration with a service principal and v2 access tokens; docs/deploy.md, "Identity and keys"). Empty: the deployment creates and keeps one through the Microsoft Graph Bicep extension, which needs the deployer to be allowed to register applications.')
param entraAppClientId string = ''

// ---------------------------------------------------------------------------------------------
// The app's own settings
// ---------------------------------------------------------------------------------------------

@description('Optional. Fleet-wide budget of Table Storage reads per second (MAX_DB_QPS): the shed valve\'s limit.')
@minValue(1)
param maxDbQps int = 200

@description('Optional. Every dip answers within this many milliseconds (HANDLER_DEADLINE_MS). Must stay below API Management\'s 2800 ms backend timeout.')
@minValue(100)
@maxValue(2700)
param handlerDeadlineMs int = 2500

@description('Optional. NCRONTAB schedule of the scale_schedule timer (SCALE_TIMER_SCHEDULE).')
param scaleTimerSchedule string = '0 */5 * * * *'

@description('''Optional. Day/night/high-risk schedule of instances (SCALE_SCHEDULE), as an object in the
format shared/scale/schedule.py reads: timezone, default levels and windows. Empty: one flat level
made of alwaysReadyInstanceCount, preWarmedInstanceCount and maximumElasticWorkerCount, so the
timer holds the deployed values.''')
param scaleSchedule object = {}

@description('Optional. The scale timer logs what it would change and changes nothing (SCALE_DRY_RUN).')
param scaleDryRun bool = false

@description('Optional. The scale timer also moves the plan minimum, sku.capacity (SCALE_SYNC_PLAN_MINIMUM).')
param scaleSyncPlanMinimum bool = false

@description('Optional. NCRONTAB schedule of the cache_warm timer (WARM_TIMER_SCHEDULE), which reads the whole customer table into Redis within warmDbQps (a run that does not finish resumes at the next). Choose an off-peak time: the schedule is in UTC unless the app has WEBSITE_TIME_ZONE (or TZ) set, which this deployment does not set (appTuning can). Warm at least daily, or raise READ_MODEL_MAX_AGE_SECONDS (appTuning) above the period between warms: a warm older than that no longer answers for absent callers.')
param warmTimerSchedule string = '0 30 4 * * *'

@description('Optional. The warm\'s share of maxDbQps (WARM_DB_QPS): table pages per second the cache_warm timer may read, and only while dips leave that much of the budget unused. 0: a quarter of maxDbQps. Must be below maxDbQps; the deployment fails early otherwise.')
@minValue(0)
@maxValue(100000)
param warmDbQps int = 0

@description('Optional. A caller absent from a fresh, complete warm is answered as no customer without a database read (READ_MODEL_AUTHORITATIVE), so unknown callers in a spike cost the database nothing. The trade-off: a customer written to the table by anything but the loader stays unknown until the next warm. Turn it off when other systems write the customer table; every absent caller then costs a database read, within the valve\'s budget.')
param readModelAuthoritative bool = true

@description('Optional. Overrides for the handler tuning settings below, as app setting name to value.')
param appTuning object = {}

// ---------------------------------------------------------------------------------------------
// Lookup key secret (Key Vault)
// ---------------------------------------------------------------------------------------------

// Where the value comes from. azd: no value is given (main.parameters.json maps it to
// LOOKUP_KEY_SECRET, empty unless set), so azd generates one on the first `azd up` and saves
// it in the azd environment for every later provision ("generate once, then save to config
// for next attempts", Azure/azure-dev cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go;
// the generate type: Work with Azure Developer CLI metadata for Bicep input parameters,
// ms.date 09/16/2025): each provision writes the same value again. az deployment with a
// .bicepparam: LOOKUP_KEY_SECRET is read from the environment on the first deployment and
// when a rotation starts, and left empty otherwise, which keeps the secret in the vault as it
// is. Rejected: a newGuid() default (a new secret on every redeploy), a deployment script
// that writes only a missing secret (a storage account, a container and a role that must
// have propagated before the script reads the vault), and a secret created by hand before
// the deployment (not one command).
@description('Required. The lookup key secret to write to Key Vault (LOOKUP_KEY_SECRET), at least 32 characters; azd generates it once. Empty: keep the secret already in the vault (a redeploy); the first deployment fails on an empty value, since there is no secret to keep. Any other value starts a rotation: see docs/deploy.md, "Rotating the lookup key secret".')
@secure()
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 64
      noSpecial: true
    }
  }
})
param lookupKeySecret string

@description('Optional. During a rotation: the version ID of the previous lookup key secret (the LOOKUP_KEY_SECRET_VERSION output before the rotation started), which LOOKUP_KEY_SECRET_PREVIOUS references. Empty: no previous secret, and the setting is not deployed.')
param lookupKeySecretPreviousVersion string = ''

// ---------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------

@description('Optional. Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Optional. Email addresses that receive alerts.')
param alertEmails array = []

@description('Optional. Percentage of degraded answers over 5 minutes that fires an alert.')
@minValue(1)
@maxValue(100)
param degradedPercentThreshold int = 5

@description('Optional. p95 dip latency, in milliseconds, that fires an alert.')
@minValue(100)
param p95LatencyThresholdMs int = 1000

@description('Optional. Percentage of dips shed to a stale or degraded answer over 5 minutes that fires an alert.')
@minValue(1)
@maxValue(100)
param shedPercentThreshold int = 10

@description('Optional. Age in seconds of the read model\'s last complete warm that fires an alert. 0: the app\'s READ_MODEL_MAX_AGE_SECONDS (26 hours unless appTuning sets it), the age past which the read model stops answering absent callers, so a daily warm that misses one run alerts within two hours of it.')
@minValue(0)
param readModelAgeAlertSeconds int = 0

// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'dipguard'
})
var contentShareName = toLower('dipguard-${environmentName}-content')
// Each function app has its own content share.
var operatorContentShareName = toLower('dipguard-${environmentName}-operator-content')

var effectiveScaleSchedule = empty(scaleSchedule) ? {
  timezone: 'UTC'
  default: {
    alwaysReady: alwaysReadyInstanceCount
    preWarmed: preWarmedInstanceCount
    maxBurst: maximumElasticWorkerCount
  }
  windows: []
} : scaleSchedule

// An async dip runs on one event loop per worker process, so a process uses at most one
// vCPU of the instance; more processes than vCPUs only add memory.
var vcpusOfSku = {
  EP1: 1
  EP2: 2
  EP3: 4
}
var workersPerInstance = (workerProcessCount == 0) ? vcpusOfSku[planSku] : workerProcessCount

// The app refuses a WARM_DB_QPS that is not below MAX_DB_QPS and would not start, so a
// deployment that sets one fails here instead.
var warmDbQpsChecked = (warmDbQps >= maxDbQps) ? int('warmDbQps must be below maxDbQps: the warm takes a share of the read budget and dips keep the rest') : warmDbQps

// Handler tuning: the defaults of shared/dip/settings.py, stated here so a deployment never
// depends on a code default changing underneath it.
var tuningDefaults = {
  MAX_DB_QPS: string(maxDbQps)
  // Counted in each worker process, so an instance's share is split between its workers;
  // otherwise more workers would quietly multiply it. MAX_INFLIGHT_DB_READS is not set: the
  // app derives each process's cap from MAX_DB_QPS, DB_READ_LATENCY_MS and
  // FUNCTIONS_WORKER_PROCESS_COUNT (appTuning can still set it).
  LOCAL_DB_QPS: string(max(1, localDbQpsPerInstance / workersPerInstance))
  DB_READ_LATENCY_MS: '40'
  VALVE_MODE: 'sliding'
  VALVE_GUARD_MS: '100'
  VALVE_PACE_SLICES: '10'
  // The per-dip log line (sampled by Application Insights); counts and latencies come from
  // the dipguard.* metrics. DEBUG or OFF saves its CPU and ingestion.
  DIP_LOG_LEVEL: 'INFO'
  HANDLER_DEADLINE_MS: string(handlerDeadlineMs)
  DB_TIMEOUT_MS: '1500'
  REDIS_TIMEOUT_MS: '100'
  REDIS_BREAKER_FAILURES: '5'
  REDIS_BREAKER_RESET_SECONDS: '5'
  CACHE_TTL_SECONDS: '60'
  STALE_TTL_SECONDS: '86400'
  NEGATIVE_TTL_SECONDS: '30'
  DEGRADED_TIER: 'Standard'
  DEFAULT_REGION: 'US'
  // The warm read model. Empty WARM_DB_QPS: the app takes a quarter of MAX_DB_QPS.
  WARM_DB_QPS: (warmDbQpsChecked == 0) ? '' : string(warmDbQpsChecked)
  READ_MODEL_AUTHORITATIVE: string(readModelAuthoritative)
  READ_MODEL_MAX_AGE_SECONDS: '93600'
  SURGE_WARM_AFTER_SECONDS: '3600'
}

// The stale read model alert and the workbook's age chart follow the app's own limit, as
// deployed (appTuning can change it), unless readModelAgeAlertSeconds sets another.
// The alert and the workbook take at least 60 s, so 1 to 59 fails here rather than in them.
var readModelMaxAgeSeconds = (readModelAgeAlertSeconds == 0) ? int(union(tuningDefaults, appTuning).READ_MODEL_MAX_AGE_SECONDS) : ((readModelAgeAlertSeconds < 60) ? int('readModelAgeAlertSeconds must be 0 (the app\'s READ_MODEL_MAX_AGE_SECONDS) or at least 60') : readModelAgeAlertSeconds)

// How API Management reaches the function app, by tier. Classic gateways
// call from static public addresses (api-management-howto-ip-addresses), so those are
// admitted. StandardV2 gateways call from addresses that are not documented as static, and
// the ApiManagement service tag covers the control plane only, so the gateway integrates
// with a subnet of its own (integrate-vnet-outbound) and that subnet is admitted.
var apimNetworkPathOfTier = {
  Developer: 'staticPublicIp'
  Basic: 'staticPublicIp'
  Standard: 'staticPublicIp'
  Premium: 'staticPublicIp'
  StandardV2: 'vnetIntegration'
}
var apimUsesVnetIntegration = apimNetworkPathOfTier[apimSkuName] == 'vnetIntegration'
var apimVnetName = 'vnet-dipguard-${environmentName}'
var apimSubnetName = 'apim-outbound'
var apimSubnetResourceId = apimUsesVnetIntegration ? resourceId('Microsoft.Network/virtualNetworks/subnets', apimVnetName, apimSubnetName) : ''

module network 'modules/network.bicep' = if (apimUsesVnetIntegration || privateNetworking) {
  name: 'dipguard-network'
  params: {
    name: apimVnetName
    networkSecurityGroupName: 'nsg-dipguard-${environmentName}-apim'
    location: location
    tags: allTags
    apimSubnetEnabled: apimUsesVnetIntegration
    addressPrefix: apimSubnetAddressPrefix
    subnetName: apimSubnetName
    privateNetworking: privateNetworking
    privateNetworkSecurityGroupName: 'nsg-dipguard-${environmentName}-private'
    appSubnetAddressPrefix: appSubnetAddressPrefix
    privateEndpointSubnetAddressPrefix: privateEndpointSubnetAddressPrefix
  }
}

// With private networking: the subnet the apps integrate with, the endpoint subnet and the
// zone of each private link sub-resource. Reading them waits for the network module, zones
// and links included, so every endpoint is made after its zone.
var appSubnetResourceId = privateNetworking ? network!.outputs.appSubnetResourceId : ''
var privateEndpointSubnetResourceId = privateNetworking ? network!.outputs.privateEndpointSubnetResourceId : ''
var privateDnsZoneResourceIds = privateNetworking ? network!.outputs.privateDnsZoneResourceIds : {}
// Kudu admits the deployers only: always with private networking, and in dev too once
// deployer ranges are given.
var restrictScm = privateNetworking || !empty(deployerIpRanges)
// With private networking Kudu admits deployerIpRanges alone, so an empty list would leave no
// way to publish code: stop before anything is deployed, naming the parameter.
// A range that admits every address, or an empty one, is refused too.
var deployerRangesOpen = contains(deployerIpRanges, '0.0.0.0/0') || contains(deployerIpRanges, '::/0') || contains(deployerIpRanges, '')
var deployerIpRangesChecked = (privateNetworking && empty(deployerIpRanges)) ? [string(int('deployerIpRanges is required with privateNetworking: Kudu (SCM) admits only those ranges, so without one no code can be published; give the CIDR that azd deploy or func publish runs from'))] : (deployerRangesOpen ? [string(int('deployerIpRanges must name the deployers\' own ranges: 0.0.0.0/0, ::/0 or an empty entry would admit everyone to Kudu (SCM)'))] : deployerIpRanges)

module monitoring 'modules/monitoring.bicep' = {
  name: 'dipguard-monitoring'
  params: {
    name: 'appi-dipguard-${environmentName}'
    workspaceName: 'log-dipguard-${environmentName}'
    location: location
    tags: allTags
    retentionInDays: logRetentionDays
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'dipguard-host-storage'
  params: {
    name: 'sthost${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    // The Functions content share (Azure Files) accepts only an account key; see function-app.bicep.
    allowSharedKeyAccess: true
    // The host: keys and timer locks (blob), queues, the content share (file) and its
    // diagnostic events (table: AzureFunctionsDiagnosticEvents<yyyyMM>, written through
    // AzureWebJobsStorage by azure-functions-host's DiagnosticEventTableStorageRepository).
    privateEndpointSubnetResourceId: privateEndpointSubnetResourceId
    privateEndpointServices: [
      'blob'
      'file'
      'queue'
      'table'
    ]
    privateDnsZoneResourceIds: privateDnsZoneResourceIds
    fileShareNames: [
      contentShareName
    ]
  }
}

// The operator app's host storage: its own account, so the public lookup app, whose settings
// hold its host account's key and whose identity holds data roles on that account, can reach
// neither the operator app's code (content share) nor its host keys and timer locks.
module operatorHostStorage 'modules/storage.bicep' = {
  name: 'dipguard-operator-host-storage'
  params: {
    name: 'sthostop${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    // The Functions content share (Azure Files) accepts only an account key; see function-app.bicep.
    allowSharedKeyAccess: true
    // The same four services as the lookup app's host account.
    privateEndpointSubnetResourceId: privateEndpointSubnetResourceId
    privateEndpointServices: [
      'blob'
      'file'
      'queue'
      'table'
    ]
    privateDnsZoneResourceIds: privateDnsZoneResourceIds
    fileShareNames: [
      operatorContentShareName
    ]
  }
}

module dataStorage 'modules/storage.bicep' = {
  name: 'dipguard-data-storage'
  params: {
    name: 'stdata${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    allowSharedKeyAccess: false
    privateEndpointSubnetResourceId: privateEndpointSubnetResourceId
    privateEndpointServices: [
      'table'
    ]
    privateDnsZoneResourceIds: privateDnsZoneResourceIds
    tableNames: [
      customerTableName
      surgeTableName
    ]
  }
}

module redis 'modules/redis.bicep' = {
  name: 'dipguard-redis'
  params: {
    name: 'redis-dipguard-${environmentName}-${resourceToken}'
    location: location
    tags: allTags
    skuName: redisSkuName
    highAvailability: redisHighAvailability
    clusteringPolicy: redisClusteringPolicy
    privateEndpointSubnetResourceId: privateEndpointSubnetResourceId
    privateDnsZoneResourceId: privateNetworking ? privateDnsZoneResourceIds.redisEnterprise : ''
  }
}

module apim 'modules/apim.bicep' = {
  name: 'dipguard-apim'
  params: {
    name: 'apim-dipguard-${environmentName}-${resourceToken}'
    location: location
    tags: allTags
    skuName: apimSkuName
    skuCapacity: apimSkuCapacity
    publisherEmail: publisherEmail
    publisherName: publisherName
    outboundSubnetResourceId: apimSubnetResourceId
  }
  dependsOn: [
    network
  ]
}

// The registration that stands for the app: API Management's tokens name it as their
// audience. Created here unless the deployer brings one (entraAppClientId).
module entraApp 'modules/entra-app.bicep' = if (empty(entraAppClientId)) {
  name: 'dipguard-entra-app'
  params: {
    uniqueName: 'dipguard-${environmentName}-${resourceToken}'
    displayName: 'dipguard (${environmentName})'
  }
}
var appClientId = empty(entraAppClientId) ? entraApp!.outputs.clientId : entraAppClientId

// The operators' registration: the audience of the tokens the operator app accepts, with the
// Surge.Operate app role, which Entra ID requires a caller to hold before it issues one
// (appRoleAssignmentRequired). Application members too, so a pipeline's or a Logic App's
// identity can be given the role for planned events. Operators sign in with the Azure CLI
// (docs/deploy.md, "Security").
var surgeOperateRole = 'Surge.Operate'
var operatorRegistrationName = 'dipguard-${environmentName}-${resourceToken}-operator'
// The role's id as entra-app.bicep derives it: from the registration's unique name and the
// role's value, the same on every deployment.
var surgeOperateRoleId = guid(operatorRegistrationName, 'appRole', surgeOperateRole)
module operatorEntraApp 'modules/entra-app.bicep' = if (empty(operatorEntraAppClientId)) {
  name: 'dipguard-operator-entra-app'
  params: {
    uniqueName: operatorRegistrationName
    displayName: 'dipguard operators (${environmentName})'
    appRoles: [
      {
        value: surgeOperateRole
        displayName: 'Raise and end surges'
        description: 'Raise, list and end dipguard surges (the operator app\'s /api/surge).'
        allowedMemberTypes: [
          'User'
          'Application'
        ]
      }
    ]
    appRoleAssignmentRequired: true
    azureCliSignIn: true
  }
}
var operatorAppClientId = empty(operatorEntraAppClientId) ? operatorEntraApp!.outputs.clientId : operatorEntraAppClientId

// The vault, the lookup key secret, and the identity that resolves the app's references with
// its Key Vault Secrets User role on the secret. Nothing here waits on API Management, so on a
// first deployment the role assignment is made at the start, some 30 minutes before the site
// that uses it (API Management comes first). The site also depends on this module (its
// outputs are the site's parameters), so the grant always exists before the site does.
module keyVault 'modules/key-vault.bicep' = {
  name: 'dipguard-key-vault'
  params: {
    name: 'kv-lk-${resourceToken}'
    referenceIdentityName: 'id-dipguard-${environmentName}-kvref'
    location: location
    tags: allTags
    secretValue: lookupKeySecret
    privateEndpointSubnetResourceId: privateEndpointSubnetResourceId
    privateDnsZoneResourceId: privateNetworking ? privateDnsZoneResourceIds.vault : ''
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'dipguard-function-app'
  params: {
    name: 'func-dipguard-${environmentName}-${resourceToken}'
    planName: 'plan-dipguard-${environmentName}'
    location: location
    tags: allTags
    azdServiceName: 'api'
    planSku: planSku
    workerProcessCount: workersPerInstance
    maximumElasticWorkerCount: maximumElasticWorkerCount
    maxBurstLimit: maxBurstLimit
    zoneRedundant: zoneRedundant
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    preWarmedInstanceCount: preWarmedInstanceCount
    functionAppScaleLimit: functionAppScaleLimit
    hostStorageAccountName: hostStorage.outputs.name
    contentShareName: contentShareName
    customerTableServiceUri: dataStorage.outputs.tableEndpoint
    redisUrl: redis.outputs.url
    redisCluster: redisClusteringPolicy == 'OSSCluster'
    appInsightsConnectionString: monitoring.outputs.connectionString
    apimPublicIpAddresses: apim.outputs.publicIpAddresses
    apimSubnetResourceId: apimSubnetResourceId
    virtualNetworkSubnetResourceId: appSubnetResourceId
    restrictScm: restrictScm
    deployerIpRanges: deployerIpRangesChecked
    authClientId: appClientId
    authAllowedPrincipalIds: [
      apim.outputs.systemAssignedMIPrincipalId
    ]
    customerTableName: customerTableName
    surgeTableName: surgeTableName
    scaleTimerSchedule: scaleTimerSchedule
    warmTimerSchedule: warmTimerSchedule
    scaleSchedule: string(effectiveScaleSchedule)
    scaleDryRun: scaleDryRun
    scaleSyncPlanMinimum: scaleSyncPlanMinimum
    lookupKeySecretUri: keyVault.outputs.secretUriWithVersion
    lookupKeySecretPreviousUri: empty(lookupKeySecretPreviousVersion) ? '' : '${keyVault.outputs.vaultUri}secrets/${keyVault.outputs.secretName}/${lookupKeySecretPreviousVersion}'
    keyVaultReferenceIdentityResourceId: keyVault.outputs.referenceIdentityResourceId
    appSettings: union(tuningDefaults, appTuning)
  }
  dependsOn: [
    keyVault
  ]
}

// The operator app: the surge switch and the scale timer, on the lookup app's plan, with the
// control-plane roles scoped to the lookup site and the plan (modules/operator-app.bicep).
module operatorApp 'modules/operator-app.bicep' = {
  name: 'dipguard-operator-app'
  params: {
    name: 'func-dipguard-${environmentName}-${resourceToken}-op'
    planName: functionApp.outputs.planName
    lookupSiteName: functionApp.outputs.name
    location: location
    tags: allTags
    azdServiceName: 'operator'
    zoneRedundant: zoneRedundant
    maxBurstLimit: maxBurstLimit
    hostStorageAccountName: operatorHostStorage.outputs.name
    contentShareName: operatorContentShareName
    customerTableServiceUri: dataStorage.outputs.tableEndpoint
    redisUrl: redis.outputs.url
    redisCluster: redisClusteringPolicy == 'OSSCluster'
    appInsightsConnectionString: monitoring.outputs.connectionString
    operatorIpRanges: operatorIpRanges
    virtualNetworkSubnetResourceId: appSubnetResourceId
    restrictScm: restrictScm
    deployerIpRanges: deployerIpRangesChecked
    authClientId: operatorAppClientId
    customerTableName: customerTableName
    surgeTableName: surgeTableName
    scaleTimerSchedule: scaleTimerSchedule
    warmTimerSchedule: warmTimerSchedule
    scaleSchedule: string(effectiveScaleSchedule)
    scaleDryRun: scaleDryRun
    scaleSyncPlanMinimum: scaleSyncPlanMinimum
    lookupKeySecretUri: keyVault.outputs.secretUriWithVersion
    lookupKeySecretPreviousUri: empty(lookupKeySecretPreviousVersion) ? '' : '${keyVault.outputs.vaultUri}secrets/${keyVault.outputs.secretName}/${lookupKeySecretPreviousVersion}'
    keyVaultReferenceIdentityResourceId: keyVault.outputs.referenceIdentityResourceId
    appSettings: union(tuningDefaults, appTuning)
  }
  dependsOn: [
    keyVault
  ]
}

// Data access, one identity at a time: the lookup app reads the customer table (not the
// account) and uses Redis; the operator app also writes the surge table. Neither holds a
// role on the other's table or on the account.
module appAccess 'modules/app-access.bicep' = {
  name: 'dipguard-app-access'
  params: {
    principalId: functionApp.outputs.systemAssignedMIPrincipalId
    appRole: 'lookup'
    hostStorageAccountName: hostStorage.outputs.name
    dataStorageAccountName: dataStorage.outputs.name
    customerTableName: customerTableName
    appInsightsName: monitoring.outputs.name
    redisName: redis.outputs.name
    redisDatabaseName: redis.outputs.databaseName
    redisAccessPolicyAssignmentName: 'functionapp'
  }
}

module operatorAccess 'modules/app-access.bicep' = {
  name: 'dipguard-operator-access'
  params: {
    principalId: operatorApp.outputs.systemAssignedMIPrincipalId
    appRole: 'operator'
    hostStorageAccountName: operatorHostStorage.outputs.name
    dataStorageAccountName: dataStorage.outputs.name
    customerTableName: customerTableName
    surgeTableName: surgeTableName
    appInsightsName: monitoring.outputs.name
    redisName: redis.outputs.name
    redisDatabaseName: redis.outputs.databaseName
    redisAccessPolicyAssignmentName: 'operatorapp'
  }
  // Azure Managed Redis fails access policy assignments written to one database at the same
  // time ("terminal provisioning state 'Failed'": Azure/azure-dev#6640, microsoft/aspire#13043),
  // so the second waits for the first.
  dependsOn: [
    appAccess
  ]
}

// The lookup API's registration, with the app role Genesys's registration is assigned:
// Genesys's tokens name it as their audience. Created here unless the deployer brings one.
module entraLookupApi 'modules/entra-lookup-api.bicep' = if (empty(lookupApiClientId)) {
  name: 'dipguard-entra-lookup-api'
  params: {
    apiUniqueName: 'dipguard-${environmentName}-${resourceToken}-lookup-api'
    apiDisplayName: 'dipguard lookup API (${environmentName})'
    genesysClientAppId: genesysClientAppId
  }
}
var lookupApiAudience = empty(lookupApiClientId) ? entraLookupApi!.outputs.apiClientId : lookupApiClientId
// A brought lookup API registration needs the Genesys client it was assigned to; fail early
// rather than deploy a policy that admits no client.
var genesysClientId = empty(lookupApiClientId) ? entraLookupApi!.outputs.genesysClientId : (empty(genesysClientAppId) ? string(int('genesysClientAppId is required when lookupApiClientId is given')) : genesysClientAppId)

// The app role assignments: Surge.Operate to the operators, Dip.Lookup to Genesys's service
// principal. They run after API Management and Redis, the deployment's slowest resources:
// Entra ID replicates a service principal created moments before only eventually, and an
// assignment that reaches a replica without it fails ("Not a valid reference update",
// microsoftgraph/msgraph-bicep-types#193); minutes later every replica has it.
module surgeOperatorRoleAssignments 'modules/entra-role-assignments.bicep' = if (empty(operatorEntraAppClientId) && !empty(surgeOperatorObjectIds)) {
  name: 'dipguard-surge-operator-role-assignments'
  params: {
    resourceServicePrincipalId: operatorEntraApp!.outputs.servicePrincipalId
    appRoleId: surgeOperateRoleId
    principalIds: surgeOperatorObjectIds
  }
  dependsOn: [
    apim
    redis
  ]
}

module genesysRoleAssignment 'modules/entra-role-assignments.bicep' = if (empty(lookupApiClientId)) {
  name: 'dipguard-genesys-role-assignment'
  params: {
    resourceServicePrincipalId: entraLookupApi!.outputs.apiServicePrincipalId
    appRoleId: entraLookupApi!.outputs.appRoleId
    principalIds: [
      entraLookupApi!.outputs.genesysPrincipalId
    ]
  }
  dependsOn: [
    apim
    redis
  ]
}

// API Management calls the app with a token from its own identity: no key is written to the
// app or read from Key Vault, so no step here waits on the Functions runtime or on a role
// assignment taking effect (docs/deploy.md, "First deployment").
module lookupApi 'modules/apim-api.bicep' = {
  name: 'dipguard-lookup-api'
  params: {
    apimName: apim.outputs.name
    functionAppName: functionApp.outputs.name
    backendAudience: appClientId
    tenantId: tenant().tenantId
    lookupApiAudience: lookupApiAudience
    genesysClientAppId: genesysClientId
    genesysIpRanges: genesysIpRanges
    apiPath: apiPath
    rateLimitCallsPerSecond: rateLimitCallsPerSecond
    rateLimitPerIpCallsPerSecond: rateLimitPerIpCallsPerSecond
    maxConcurrentCalls: maxConcurrentCalls
  }
}

// The audit trail in the Log Analytics workspace: Key Vault audit events, API Management
// gateway logs, storage reads, writes and deletes (customer tables, host blobs and content
// share) and both function apps' logs (docs/deploy.md, "What is logged where").
module diagnostics 'modules/diagnostics.bicep' = {
  name: 'dipguard-diagnostics'
  params: {
    workspaceResourceId: monitoring.outputs.workspaceResourceId
    functionAppNames: [
      functionApp.outputs.name
      operatorApp.outputs.name
    ]
    apiManagementName: apim.outputs.name
    keyVaultName: keyVault.outputs.name
    dataStorageAccountName: dataStorage.outputs.name
    hostStorageAccountNames: [
      hostStorage.outputs.name
      operatorHostStorage.outputs.name
    ]
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'dipguard-alerts'
  params: {
    name: 'ag-dipguard-${environmentName}'
    location: location
    tags: allTags
    appInsightsResourceId: monitoring.outputs.resourceId
    alertEmails: alertEmails
    degradedPercentThreshold: degradedPercentThreshold
    shedPercentThreshold: shedPercentThreshold
    readModelMaxAgeSeconds: readModelMaxAgeSeconds
    p95LatencyThresholdMs: p95LatencyThresholdMs
  }
}

// A shared workbook on Application Insights: dips, shedding, the valve, database reads
// against MAX_DB_QPS, instances against the schedule, surges, the read model, and sign-ins and
// refusals (docs/img/workbook-layout.png shows its layout).
module workbook 'modules/workbook.bicep' = {
  name: 'dipguard-workbook'
  params: {
    displayName: 'dipguard (${environmentName})'
    location: location
    tags: allTags
    appInsightsResourceId: monitoring.outputs.resourceId
    logAnalyticsWorkspaceResourceId: monitoring.outputs.workspaceResourceId
    maxDbQps: maxDbQps
    readModelMaxAgeSeconds: readModelMaxAgeSeconds
    degradedPercentThreshold: degradedPercentThreshold
    shedPercentThreshold: shedPercentThreshold
  }
}

@description('Name of the lookup function app (azd deploys the code here as the api service).')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Name of the operator function app (azd deploys the same code here as the operator service).')
output OPERATOR_FUNCTION_APP_NAME string = operatorApp.outputs.name

@description('The surge endpoint operators call with an Entra ID token carrying the Surge.Operate role.')
output SURGE_URL string = 'https://${operatorApp.outputs.defaultHostName}/api/surge'

@description('Application (client) ID of the operators\' app registration: operators ask for a token for it (docs/deploy.md, "Security").')
output OPERATOR_APP_CLIENT_ID string = operatorAppClientId

@description('The URL Genesys Cloud data actions post to.')
output LOOKUP_URL string = lookupApi.outputs.lookupUrl

@description('Microsoft Entra token endpoint Genesys Cloud\'s custom auth action posts to (docs/deploy.md, "Wire up Genesys Cloud").')
output ENTRA_TOKEN_URL string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/oauth2/v2.0/token'

@description('Tenant ID for the tenantId field of Genesys Cloud\'s credential.')
output ENTRA_TENANT_ID string = tenant().tenantId

@description('Scope Genesys Cloud requests a token for: the lookup API registration\'s client ID with /.default.')
output LOOKUP_API_SCOPE string = '${lookupApiAudience}/.default'

@description('Application (client) ID of Genesys Cloud\'s registration; its secret is created with az ad app credential reset (docs/deploy.md).')
output GENESYS_CLIENT_ID string = genesysClientId

@description('Name of the API Management service.')
output APIM_NAME string = apim.outputs.name

@description('Name of the Application Insights component.')
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.name

@description('Resource ID of the dipguard workbook; it opens from the Application Insights component\'s Workbooks.')
output WORKBOOK_ID string = workbook.outputs.resourceId

@description('Name of the Key Vault that holds the lookup key secret.')
output KEY_VAULT_NAME string = keyVault.outputs.name

@description('Version ID of the lookup key secret that LOOKUP_KEY_SECRET references (an identifier, not the secret): a rotation passes it as lookupKeySecretPreviousVersion.')
output LOOKUP_KEY_SECRET_VERSION string = keyVault.outputs.secretVersion
