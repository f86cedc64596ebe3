using 'main.bicep'

// Production: zone-redundant EP2 plan with head-room for a 10x call spike, Standard v2 API
// Management, replicated Azure Managed Redis, zone-redundant storage, and a day/night schedule
// that raises always-ready instances ahead of business hours.
//
//   APIM_PUBLISHER_EMAIL=ops@contoso.com ALERT_EMAIL=oncall@contoso.com \
//     az deployment group create -g <resource-group> --parameters bicep/prod.bicepparam

param environmentName = 'prod'
param publisherEmail = readEnvironmentVariable('APIM_PUBLISHER_EMAIL')

// The lookup key secret: read from NEW_LOOKUP_KEY_SECRET on the first deployment and when a
// rotation starts, empty otherwise (the secret in Key Vault stays as it is). During a
// rotation, LOOKUP_KEY_SECRET_PREVIOUS_VERSION names the previous version (docs/deploy.md,
// "Rotating the lookup key secret").
param lookupKeySecret = readEnvironmentVariable('NEW_LOOKUP_KEY_SECRET', '')
param lookupKeySecretPreviousVersion = readEnvironmentVariable('LOOKUP_KEY_SECRET_PREVIOUS_VERSION', '')

param planSku = 'EP2'
// Linux Elastic Premium allows a maximum burst of 20 in most regions and 100 in some
// (functions-premium-plan, region table). 20 deploys anywhere. In a region whose limit is
// 100 (East US 2, West Europe and others), set maxBurstLimit = 100, then raise
// maximumElasticWorkerCount and the schedule's maxBurst values below up to it.
param maxBurstLimit = 20
param maximumElasticWorkerCount = 20
// Zone redundancy needs at least 3 always-ready instances, here and in every schedule level.
param zoneRedundant = true
param alwaysReadyInstanceCount = 3
param preWarmedInstanceCount = 2

param storageSkuName = 'Standard_ZRS'
param redisSkuName = 'Balanced_B5'
param redisHighAvailability = true

// A private data plane: both apps integrate with the virtual network; storage, Redis and Key
// Vault answer only through private endpoints (docs/deploy.md, "Networks").
param privateNetworking = true
// The only addresses Kudu (the SCM site) admits, e.g. [ '203.0.113.7/32' ] for the machine
// or self-hosted runner that runs azd deploy. Required with privateNetworking: give it on the
// command line (README, "Deploy"); left empty, the deployment stops before it starts, naming
// deployerIpRanges, since no code could be published.
param deployerIpRanges = []

// Standard v2 calls the function app from a subnet of its own, which the
// deployment creates (apimSubnetAddressPrefix, 10.90.0.0/24 unless set here).
param apimSkuName = 'StandardV2'
param apimSkuCapacity = 1
param rateLimitCallsPerSecond = 1000
param rateLimitPerIpCallsPerSecond = 1000
param maxConcurrentCalls = 200
// Genesys Cloud's egress ranges for an ip-filter in front of the token check, e.g.
// [ '52.0.0.0/28' ] from GET /api/v2/ipranges of your Genesys region. Defence in depth: Genesys
// changes them, so update this list when Genesys announces a change, or leave it empty.
param genesysIpRanges = []
// Operators' egress ranges for the operator app (the surge endpoints), e.g. [ '203.0.113.0/24' ];
// empty leaves it to Entra ID and the Surge.Operate app role alone.
param operatorIpRanges = []
// Object IDs of the people (or a group) who raise surges: they get the Surge.Operate app role.
param surgeOperatorObjectIds = []

param maxDbQps = 400
param handlerDeadlineMs = 2500

// Night and weekends at the zone-redundant floor; business hours warm enough for the usual
// morning peak. The plan may burst to the regional limit at any hour, for a recall or an
// outage spike: burst instances are billed only while they run. Surges (POST /api/surge)
// raise always-ready further for a known event.
param scaleSchedule = {
  timezone: 'America/New_York'
  default: {
    alwaysReady: 3
    preWarmed: 1
    maxBurst: 20
  }
  windows: [
    {
      name: 'weekday business hours'
      days: [
        'mon'
        'tue'
        'wed'
        'thu'
        'fri'
      ]
      start: '07:00'
      end: '20:00'
      alwaysReady: 8
      preWarmed: 2
    }
    {
      name: 'saturday'
      days: [
        'sat'
      ]
      start: '08:00'
      end: '17:00'
      alwaysReady: 5
      preWarmed: 2
    }
  ]
}

param logRetentionDays = 90
param alertEmails = [
  readEnvironmentVariable('ALERT_EMAIL')
]
param degradedPercentThreshold = 5
param p95LatencyThresholdMs = 1000
