metadata name = 'dipguard app role assignments'
metadata description = 'Assignments of one app role of a registration\'s service principal to users, groups or service principals, made in a step of their own after the registrations exist.'

// Microsoft Graph resources in a Bicep deployment need the Microsoft Graph extension,
// declared in bicep/bicepconfig.json (learn.microsoft.com/graph/templates/bicep/quickstart-create-bicep-interactive-mode).
extension microsoftGraphV1

@description('Required. Object ID of the service principal that defines the app role (the resource of the assignments).')
param resourceServicePrincipalId string

@description('Required. ID of the app role to assign.')
param appRoleId string

@description('Required. Object IDs of the users, groups or service principals that get the role.')
param principalIds array

// A redeploy finds each assignment by its composite key, (appRoleId, principalId) under the
// resource's service principal, and leaves it as it is rather than adding a second one
// (microsoftgraph/msgraph-bicep-types, src/swagger-generation/config-v1.0.yml, commit 1d5ba4f).
resource appRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for principalId in principalIds: {
    resourceId: resourceServicePrincipalId
    appRoleId: appRoleId
    principalId: principalId
  }
]

@description('The app role the assignments give: the id they are found by on a redeploy, with each principal.')
output name string = appRoleId

@description('The object ID of the service principal the assignments are made on (Microsoft Graph\'s servicePrincipals/{id}/appRoleAssignedTo).')
output resourceId string = resourceServicePrincipalId

@description('The object ID of each assignment, in the order of principalIds.')
output assignmentIds array = [for (principalId, i) in principalIds: appRoleAssignments[i].id]
