metadata name = 'dipguard lookup API'
metadata description = 'Publishes POST /lookup on API Management from the repository\'s openapi.json: callers present a Microsoft Entra token issued to Genesys Cloud\'s registration (validate-azure-ad-token), per-address and per-client rate limits, an optional ip-filter of Genesys\'s egress ranges, and a backend reached with a token from API Management\'s managed identity. The surge admin endpoints are deliberately not published.'

@description('Required. Name of the existing API Management service.')
param apimName string

@description('Required. Name of the existing function app.')
param functionAppName string

@description('Required. Application (client) ID of the function app\'s Entra app registration: API Management asks Entra ID for a token with this audience (authentication-managed-identity) and App Service Authentication on the app checks it.')
param backendAudience string

@description('Required. Microsoft Entra tenant ID that issues the tokens Genesys Cloud presents.')
param tenantId string

@description('Required. Application (client) ID of the lookup API\'s app registration: the audience of the v2 access tokens Genesys requests with scope <this id>/.default.')
param lookupApiAudience string

@description('Required. Application (client) ID of Genesys Cloud\'s app registration: the only client application whose tokens are accepted.')
param genesysClientAppId string

@description('Optional. App role a token must carry in its roles claim (assigned to Genesys\'s service principal on the lookup API).')
param lookupAppRole string = 'Dip.Lookup'

@description('Optional. Genesys Cloud\'s egress ranges in CIDR form (GET /api/v2/ipranges), for an ip-filter in front of the token check. Defence in depth only: Genesys changes these ranges, so keep them current or leave the list empty, which deploys no filter.')
param genesysIpRanges array = []

@description('Optional. Name of the API.')
param name string = 'dipguard-lookup'

@description('Optional. URL suffix of the API on the gateway: Genesys calls https://<apim>.azure-api.net/<apiPath>/lookup.')
param apiPath string = 'dip'

@description('Optional. Calls per second allowed per client application, keyed on the token\'s azp claim (rate-limit-by-key), before API Management answers 429.')
@minValue(1)
param rateLimitCallsPerSecond int = 1000

@description('Optional. Calls per second allowed per source address (rate-limit-by-key on context.Request.IpAddress), counted before the token check. Genesys calls from a few egress addresses, so keep it at or above Genesys\'s whole peak.')
@minValue(1)
param rateLimitPerIpCallsPerSecond int = 1000

@description('Optional. Calls in flight to the function app per gateway (limit-concurrency) before API Management answers 429.')
@minValue(1)
param maxConcurrentCalls int = 200

var backendName = 'dipguard-functions'
var policyXml = loadTextContent('../policies/lookup-api.xml')

// ip-filter takes single addresses and from-to ranges, not CIDR, so each range becomes its
// network-to-broadcast span (parseCidr). No range: no filter element at all.
var ipFilterRanges = [for cidr in genesysIpRanges: '<address-range from="${parseCidr(cidr).network}" to="${parseCidr(cidr).broadcast}" />']
var ipFilterXml = empty(genesysIpRanges) ? '' : '<ip-filter action="allow">${join(ipFilterRanges, '')}</ip-filter>'

// The policy file with every placeholder filled: who may call, then the limits and backend.
var policyWithCaller = replace(replace(replace(replace(replace(policyXml, '__GENESYS_IP_FILTER__', ipFilterXml), '__TENANT_ID__', tenantId), '__GENESYS_CLIENT_ID__', genesysClientAppId), '__LOOKUP_API_AUDIENCE__', lookupApiAudience), '__LOOKUP_APP_ROLE__', lookupAppRole)
var policyDeployed = replace(replace(replace(replace(replace(policyWithCaller, '__RATE_LIMIT_PER_IP_CALLS__', string(rateLimitPerIpCallsPerSecond)), '__RATE_LIMIT_CALLS__', string(rateLimitCallsPerSecond)), '__MAX_CONCURRENCY__', string(maxConcurrentCalls)), '__BACKEND_ID__', apiManagement_backend.name), '__BACKEND_AUDIENCE__', backendAudience)

resource apiManagement 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource functionApp 'Microsoft.Web/sites@2024-11-01' existing = {
  name: functionAppName
}

resource apiManagement_backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: apiManagement
  name: backendName
  properties: {
    description: 'dipguard function app'
    protocol: 'http'
    url: 'https://${functionApp.properties.defaultHostName}/api'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}

// No subscription key: the Entra token is the credential. A key in the Genesys credential
// store beside the client secret adds no second factor (whoever reads one reads both), and
// Microsoft asks not to rely on keys for authentication (Secure your API Management
// deployment). With no key required, the gateway still checks a key that is sent
// (Subscriptions in Azure API Management, ms.date 08/02/2023), so the query name is one no
// caller uses, and the policy refuses every query string and removes the key header.
resource apiManagement_api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apiManagement
  name: name
  properties: {
    displayName: 'dipguard lookup'
    description: 'Caller lookup for Genesys Cloud IVR data dips.'
    path: apiPath
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    subscriptionKeyParameterNames: {
      header: 'Ocp-Apim-Subscription-Key'
      query: 'dipguard-no-query-keys'
    }
    serviceUrl: 'https://${functionApp.properties.defaultHostName}/api'
    format: 'openapi+json'
    value: loadTextContent('../../openapi.json')
  }
}

resource apiManagement_api_policy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: apiManagement_api
  name: 'policy'
  properties: {
    format: 'xml'
    value: policyDeployed
  }
}

@description('The name of the API.')
output name string = apiManagement_api.name

@description('The resource ID of the API.')
output resourceId string = apiManagement_api.id

@description('The URL Genesys Cloud posts data dips to.')
output lookupUrl string = '${apiManagement.properties.gatewayUrl}/${apiPath}/lookup'
