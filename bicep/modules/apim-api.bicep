metadata name = 'dipguard lookup API'
metadata description = 'Publishes POST /lookup on API Management from the repository\'s openapi.json: a backend reached with a token from API Management\'s managed identity, rate and concurrency limits, and a Genesys Cloud product and subscription. The surge admin endpoints are deliberately not published.'

@description('Required. Name of the existing API Management service.')
param apimName string

@description('Required. Name of the existing function app.')
param functionAppName string

@description('Required. Application (client) ID of the function app\'s Entra app registration: API Management asks Entra ID for a token with this audience (authentication-managed-identity) and App Service Authentication on the app checks it.')
param backendAudience string

@description('Optional. Name of the API.')
param name string = 'dipguard-lookup'

@description('Optional. URL suffix of the API on the gateway: Genesys calls https://<apim>.azure-api.net/<apiPath>/lookup.')
param apiPath string = 'dip'

@description('Optional. Calls per second allowed per subscription (rate-limit-by-key) before API Management answers 429.')
@minValue(1)
param rateLimitCallsPerSecond int = 1000

@description('Optional. Calls in flight to the function app per gateway (limit-concurrency) before API Management answers 429.')
@minValue(1)
param maxConcurrentCalls int = 200

@description('Optional. Display name of the product Genesys Cloud subscribes to.')
param productDisplayName string = 'Genesys Cloud data actions'

var backendName = 'dipguard-functions'
var policyXml = loadTextContent('../policies/lookup-api.xml')

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
    subscriptionRequired: true
    subscriptionKeyParameterNames: {
      header: 'Ocp-Apim-Subscription-Key'
      query: 'subscription-key'
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
    value: replace(replace(replace(replace(policyXml, '__RATE_LIMIT_CALLS__', string(rateLimitCallsPerSecond)), '__MAX_CONCURRENCY__', string(maxConcurrentCalls)), '__BACKEND_ID__', apiManagement_backend.name), '__BACKEND_AUDIENCE__', backendAudience)
  }
}

resource apiManagement_product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: apiManagement
  name: 'genesys-cloud'
  properties: {
    displayName: productDisplayName
    description: 'Data dips from Genesys Cloud Architect flows.'
    subscriptionRequired: true
    approvalRequired: true
    state: 'published'
  }
}

resource apiManagement_product_api 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: apiManagement_product
  name: apiManagement_api.name
}

resource apiManagement_subscription 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = {
  parent: apiManagement
  name: 'genesys-cloud'
  properties: {
    displayName: 'Genesys Cloud org'
    scope: apiManagement_product.id
    state: 'active'
    allowTracing: false
  }
}

@description('The name of the API.')
output name string = apiManagement_api.name

@description('The resource ID of the API.')
output resourceId string = apiManagement_api.id

@description('The URL Genesys Cloud posts data dips to.')
output lookupUrl string = '${apiManagement.properties.gatewayUrl}/${apiPath}/lookup'

@description('The resource ID of the Genesys Cloud subscription. Read its key with: az rest --method post --uri "https://management.azure.com<id>/listSecrets?api-version=2024-05-01".')
output genesysSubscriptionId string = apiManagement_subscription.id
